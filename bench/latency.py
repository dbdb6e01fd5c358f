#!/usr/bin/env python3
"""Mail at random moments, and the wait of an ordinary Eden task, with real
workers (issue 18).

    .venv/bin/python bench/latency.py                 # app, Eden, stock Eden (~20 min)
    .venv/bin/python bench/latency.py --only app      # or eden, stock
    .venv/bin/python bench/latency.py --minutes 1 --moments 5 --tasks 3   # a smoke run

- app: this app in a web2py runtime with its delivery worker
  (``-K outbox:s3outbox``, what ./dev run starts). At ``--moments`` random
  moments over ``--minutes`` minutes one mail is queued (``MailS3.send()``
  and a commit, from this process, on the app's database) and the time to
  its arrival at an aiosmtpd sink in this process is taken.
- eden: Sahana Eden from ../shared/eden-asp with the outbox installed and
  both workers (``-K eden:s3outbox`` and ``-K eden``): the same random
  moments into Eden's outbox, and meanwhile ``--tasks`` ordinary Eden tasks
  (``msg_process_outbox`` with ["EMAIL"], queued as Eden queues it, with
  ``queue_task``) at random moments: the time from the queueing commit to the
  task's status RUNNING (polled every 20 ms).
- stock: the same Eden without the outbox, Eden's one ``-K eden`` worker:
  the same task waits.
- Eden's workers run ``--warmup`` seconds (60) before the first moment, so
  that both setups are measured in their steady state (a new worker takes up
  to two rounds of five heartbeats to settle which worker assigns tasks).
- idle cost: the CPU seconds the delivery task's process used over one idle
  minute (from /proc), in the app and in Eden.

Prints a table and writes JSON to bench/results/latency-<UTC time>.json.
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _path in (
    os.path.join(ROOT, "modules"),
    os.path.join(ROOT, "scripts"),
    os.path.join(ROOT, "tests"),
):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from edenapp import EdenApp, tarball  # noqa: E402
from helpers import wait_for  # noqa: E402
from pydal import DAL  # noqa: E402
from smtpsink import Sink, SinkController  # noqa: E402
from webapp import WebApp  # noqa: E402

from s3outbox.delivery.store import utcnow  # noqa: E402

SENDER = "Bench <bench@bench.localhost>"
TICK = os.sysconf("SC_CLK_TCK")


class Arrivals(Sink):
    """A sink that notes when each recipient's mail arrived."""

    def __init__(self):
        Sink.__init__(self, keep=False, on_message=self.arrived)
        self.at = {}

    def arrived(self, sender, rcpts, data):
        now = time.time()
        for rcpt in rcpts:
            self.at.setdefault(rcpt, now)


def moments(count, seconds, rnd):
    """``count`` random offsets within ``seconds``, sorted."""
    return sorted(rnd.uniform(0, seconds) for _ in range(count))


def open_outbox(uri, folder, tablename):
    """A MailS3 on a site's database (its tables exist), as send() runs there."""
    from s3outbox import MailS3

    db = DAL(uri, folder=folder, migrate=False, fake_migrate=True)
    return MailS3(db, tablename=tablename, migrate=False)


def mail_latency(mail, sink, tag, offset, started):
    """Queue one mail at ``started + offset``; seconds to its arrival."""
    time.sleep(max(0.0, started + offset - time.time()))
    to = "%s-%d@people.net" % (tag, int(offset * 1000))
    assert mail.send(to=to, subject="Latency %s" % tag, message="at %.1f s" % offset)
    mail.db.commit()
    queued = time.time()
    if not wait_for(lambda: to in sink.at, 60, step=0.02):
        return None
    return sink.at[to] - queued


def task_wait(where, offset, started, results):
    """Queue Eden's msg_process_outbox at ``started + offset`` as Eden's
    scheduler.queue_task does; seconds from the commit to RUNNING."""
    db = DAL("sqlite://storage.db", folder=where, migrate=False, fake_migrate=True)
    scheduler = define_scheduler(db)
    time.sleep(max(0.0, started + offset - time.time()))
    queued = scheduler.queue_task(
        "msg_process_outbox", ["EMAIL"], timeout=300, application_name="eden/default"
    )
    db.commit()
    at = time.time()
    st = db.scheduler_task

    def started_running():
        db.commit()
        row = db(st.id == queued.id).select(st.status).first()
        return row.status not in ("QUEUED", "ASSIGNED")

    results.append(wait_for(started_running, 300, step=0.02) and time.time() - at)
    db.close()


def task_cpu(worker_pid):
    """CPU seconds (user + system) of the worker's child processes now."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == worker_pid:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def idle_cost(worker_pid, seconds=60):
    before = task_cpu(worker_pid)
    time.sleep(seconds)
    return task_cpu(worker_pid) - before


def run_moments(mail, sink, tag, args, rnd, where=None):
    """The mail latencies (with a ``mail``) and Eden task waits (with the
    folder of Eden's database, ``where``) of one window of random moments."""
    window = args.minutes * 60
    mails = moments(args.moments, window, rnd) if mail is not None else []
    tasks = moments(args.tasks, window, rnd) if where is not None else []
    waits, threads = [], []
    started = time.time() + 2
    for offset in tasks:
        t = threading.Thread(target=task_wait, args=(where, offset, started, waits))
        t.start()
        threads.append(t)
    latencies = [mail_latency(mail, sink, tag, offset, started) for offset in mails]
    for t in threads:
        t.join()
    return latencies, waits


def define_scheduler(db):
    """web2py's Scheduler on Eden's tables, knowing the task Eden queues."""
    from gluon.scheduler import Scheduler

    return Scheduler(db, tasks=dict(msg_process_outbox=None), migrate=False)


def bench_app(args, rnd, sink, folder):
    with WebApp(os.path.join(folder, "app"), smtp=sink.server) as app:
        mail = open_outbox(app.db_uri, os.path.join(app.app, "databases"), "msg_outbox")
        mail.db.executesql("PRAGMA busy_timeout = 30000")
        latencies, _ = run_moments(mail, sink, "app", args, rnd)
        cpu = idle_cost(app.procs["worker"].pid)
        mail.db.close()
    return dict(latencies=latencies, idle_cpu_per_minute=cpu)


def bench_eden(args, rnd, sink, folder, install):
    mail_conf = dict(server=sink.server, sender=SENDER)
    eden = EdenApp(
        os.path.join(folder, "eden" if install else "stock"), install=install, mail=mail_conf
    ).build()
    eden.want_worker = install
    eden.start()  # with the outbox: -K eden:s3outbox and -K eden
    try:
        if not install:  # stock Eden: its one usual worker
            eden.start_worker("eden", group=None)
        # Steady state: the workers have chosen their ticker (a new worker
        # takes up to two rounds of five heartbeats to settle it).
        time.sleep(args.warmup)
        where = os.path.join(eden.app, "databases")
        if install:
            mail = open_outbox("sqlite://storage.db", where, "msg_mail_outbox")
            mail.db.executesql("PRAGMA busy_timeout = 30000")
            latencies, waits = run_moments(mail, sink, "eden", args, rnd, where)
            cpu = idle_cost(eden.procs["worker"].pid)
            mail.db.close()
        else:
            latencies, waits = run_moments(None, sink, "stock", args, rnd, where)
            cpu = None
    finally:
        eden.stop()
    return dict(latencies=latencies, task_waits=waits, idle_cpu_per_minute=cpu)


def summary(values):
    got = [v for v in values if v is not None]
    if not got:
        return "-"
    missing = len(values) - len(got)
    return "n %d, mean %.2f s, median %.2f s, worst %.2f s%s" % (
        len(got),
        statistics.mean(got),
        statistics.median(got),
        max(got),
        ", %d never" % missing if missing else "",
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=("app", "eden", "stock"), action="append")
    p.add_argument("--minutes", type=float, default=5)
    p.add_argument("--moments", type=int, default=20)
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--warmup",
        type=float,
        default=60,
        help="seconds between starting Eden's workers and the first moment",
    )
    args = p.parse_args(argv)
    parts = args.only or ["app", "eden", "stock"]
    if tarball() is None:
        parts = [x for x in parts if x == "app"]
    rnd = random.Random(args.seed)
    results = dict(when=utcnow().isoformat(), args=vars(args))
    handler = Arrivals()
    with (
        SinkController(handler) as controller,
        tempfile.TemporaryDirectory(prefix="latency-") as folder,
    ):
        handler.server = controller.server_address
        for part in parts:
            if part == "app":
                results["app"] = bench_app(args, rnd, handler, folder)
            else:
                results[part] = bench_eden(args, rnd, handler, folder, part == "eden")
            print("%s: %s" % (part, json.dumps(results[part])), flush=True)
    print(
        "\n| | mail queued to relay (%d random moments over %g min) | Eden task "
        "queue to start | delivery process CPU, idle minute |" % (args.moments, args.minutes)
    )
    print("|---|---|---|---|")
    for part in parts:
        r = results[part]
        cpu = r.get("idle_cpu_per_minute")
        print(
            "| %s | %s | %s | %s |"
            % (
                part,
                summary(r.get("latencies") or []),
                summary(r.get("task_waits") or []),
                "%.2f s" % cpu if cpu is not None else "-",
            )
        )
    out = os.path.join(HERE, "results", "latency-%s.json" % utcnow().strftime("%Y%m%dT%H%M%S"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print("\nwritten to %s" % out)


if __name__ == "__main__":
    main()
