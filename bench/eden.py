#!/usr/bin/env python3
"""An alert to N volunteers in a real Sahana Eden, stock and with the outbox.

    ./dev bench eden                   N=2000, SQLite and PostgreSQL
    ./dev bench eden --n 10000 --db postgres --no-stock
    ./dev bench eden --help

For each database one Eden runtime is built from ../shared/eden-asp (as the
Eden tests build it) with a group of N persons, each with one EMAIL contact.
The outbox phase runs first (installed by scripts/eden_install.py), then the
stock phase on the same runtime after ``--uninstall``. Each phase: the
workers (with the outbox ``-K eden:s3outbox`` and ``-K eden``, as the README
says; stock Eden ``-K eden``), having delivered one mail; ``--runners`` processes
running Eden's ``msg.process_outbox("EMAIL")`` every 0.2 s (a second worker,
a request running it); then ``msg.send_by_pe_id(group, subject, body)``
(whose ``run_async`` queues Eden's own task too). The relay is an SMTP sink
that advertises PIPELINING, behind bench/wireproxy.py (``--rtt``, 20 ms).
Reported from the moment send_by_pe_id returned: time to the first mail and
to the last member's first mail, mails received (``--settle`` seconds after
the last, or when ``--timeout`` ends the wait), duplicates, members missing,
SMTP connections, and the peak resident memory of the processes of the phase.
Exit status 1 when a phase of the outbox lost or doubled a mail.
"""

import argparse
import datetime
import json
import multiprocessing
import os
import re
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _path in (os.path.join(ROOT, "scripts"), os.path.join(ROOT, "tests"), HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from edenapp import EdenApp, tarball, value  # noqa: E402
from smtpsink import Sink, SinkController  # noqa: E402
from wireproxy import WireProxy  # noqa: E402

SENDER = "Eden Bench <eden@bench.localhost>"
DOMAIN = "volunteers.bench"
SHELL = os.path.join(ROOT, "tests", "eden_shell.py")


class Counter:
    """The relay's side: per member, the mails with the phase's subject."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sink = Sink(keep=False, on_message=self.on_message, extensions=["PIPELINING"])
        self.reset("")

    def reset(self, subject):
        with self.lock:
            self.tag, self.times, self.first = subject.encode(), [], {}
            self.sink.connections = 0

    def on_message(self, mail_from, rcpts, data):
        now = time.time()
        with self.lock:
            if self.tag and self.tag in data:
                self.times.append(now)
                for rcpt in rcpts:
                    self.first.setdefault(rcpt, now)

    def members(self):
        with self.lock:
            return len(self.first)


def peak_rss(pids):
    """Resident memory (bytes) of ``pids`` and all their descendants."""
    total, todo = 0, list(pids)
    while todo:
        pid = todo.pop()
        try:
            with open("/proc/%d/status" % pid) as f:
                total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024
            for task in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, AttributeError):
            pass
    return total


class Bench:
    """The sink and the relay of the whole run; a runtime and two phases a
    database."""

    def __init__(self, args, ctx):
        self.args, self.ctx = args, ctx
        self.counter = Counter()
        self.controller = SinkController(self.counter.sink)
        self.controller.start()
        self.relay = WireProxy(ctx, self.controller.server_address, args.rtt)
        self.results = []

    def close(self):
        self.relay.stop()
        self.controller.stop()

    def log(self, text):
        print("[%s] %s" % (time.strftime("%H:%M:%S"), text), flush=True)

    # ------------------------------------------------------------ runtime
    def build(self, folder, db_uri):
        self.log("building Eden (%s) in %s" % (db_uri or "SQLite", folder))
        app = EdenApp(
            folder, db_uri=db_uri, mail=dict(server=self.relay.server, sender=SENDER)
        ).build()
        self.log("creating %d volunteers" % self.args.n)
        app.group = value(
            app.shell("volunteers", "Bench volunteers", self.args.n, DOMAIN), "pe_id"
        )
        app.warm = value(app.shell("volunteers", "Bench warm-up", 1, "warm.bench"), "pe_id")
        return app

    def shell(self, app, *args):
        """An Eden shell running in the background (a Popen)."""
        return subprocess.Popen(
            [
                sys.executable,
                os.path.join(app.folder, "web2py.py"),
                "--no_banner",
                "-S",
                "eden",
                "-M",
                "-R",
                SHELL,
                "-A",
            ]
            + [str(a) for a in args],
            cwd=app.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    # -------------------------------------------------------------- phase
    def phase(self, app, name, db_name):
        args = self.args
        app.query("UPDATE msg_outbox SET status=4 WHERE status=1")  # earlier leftovers
        if name == "outbox":  # as the README says: the outbox's worker and Eden's
            app.start_worker()
            app.start_worker("eden", group=None)
        else:
            app.start_worker(group=None)
        self.warm_up(app, name)
        runners = [
            self.shell(app, "process_outbox_loop", 100000, 0.2) for _ in range(args.runners)
        ]
        time.sleep(args.runner_start)  # Eden's models load in each runner
        subject = "Alert %s %s" % (name, uuid.uuid4().hex[:8])
        self.counter.reset(subject)
        pids = [p.pid for p in runners] + [p.pid for p in app.procs.values()]
        peak = [0]
        self._stop_sampling = False
        sampler = threading.Thread(target=self._sample, args=(pids, peak), daemon=True)
        out = app.shell("send_by_pe_id", app.group, subject)
        returned = float(value(out, "returned"))
        self.log("%s: send_by_pe_id returned; waiting for %d members" % (name, args.n))
        sampler.start()
        done = self.wait(returned)
        time.sleep(args.settle)
        for runner in runners:
            runner.terminate()
        for runner in runners:
            runner.wait()
        for worker in list(app.procs):
            app.stop_worker(worker)
        self._stop_sampling = True
        sampler.join()
        row = self.row(name, db_name, subject, returned, done, peak[0], app)
        self.results.append(row)
        self.log(json.dumps(row))
        return row

    def _sample(self, pids, peak):
        """Every 0.5 s until the phase ends: the peak of peak_rss(pids)."""
        while not self._stop_sampling:
            peak[0] = max(peak[0], peak_rss(pids))
            time.sleep(0.5)

    def warm_up(self, app, name):
        """The worker delivers one mail before the alert (with the outbox,
        once a shell's process_outbox handed it over)."""
        subject = "Warm-up %s %s" % (name, uuid.uuid4().hex[:8])
        self.counter.reset(subject)
        app.shell("send_by_pe_id", app.warm, subject)
        if name == "outbox":
            app.wait_worker()
            app.shell("process_outbox")
        deadline = time.time() + 180
        while not self.counter.members() and time.time() < deadline:
            time.sleep(0.2)
        if not self.counter.members():
            raise RuntimeError(
                "%s: the warm-up mail did not arrive:\n%s" % (name, app.log("worker")[-3000:])
            )

    def wait(self, returned):
        """Until every member has a mail, or --timeout; the time then."""
        deadline = returned + self.args.timeout
        while self.counter.members() < self.args.n and time.time() < deadline:
            time.sleep(0.1)
        return time.time()

    def row(self, name, db_name, subject, returned, done, peak, app):
        c = self.counter
        with c.lock:
            times, first, connections = list(c.times), dict(c.first), c.sink.connections
        queued = (
            app.query("SELECT COUNT(*) FROM msg_mail_outbox WHERE subject=?", (subject,))[0][0]
            if name == "outbox"
            else None
        )
        return dict(
            phase=name,
            db=db_name,
            n=self.args.n,
            runners=self.args.runners,
            rtt=self.args.rtt,
            first=round(min(times) - returned, 2) if times else None,
            last=round(max(first.values()) - returned, 2) if len(first) == self.args.n else None,
            waited=round(done - returned, 1),
            received=len(times),
            members=len(first),
            duplicates=len(times) - len(first),
            missing=self.args.n - len(first),
            queued=queued,
            connections=connections,
            peak_rss_mb=round(peak / 2**20),
        )

    # ---------------------------------------------------------------- run
    def run_db(self, db_name, db_uri, folder):
        app = self.build(folder, db_uri)
        try:
            self.phase(app, "outbox", db_name)
            if not self.args.no_stock:
                app.installer("--uninstall", "--force")  # nothing waits by now
                self.phase(app, "stock", db_name)
        finally:
            app.stop()


def table(rows):
    head = (
        "| | Eden DB | N | first mail | last mail | received | duplicates | "
        "missing | SMTP connections | peak RSS |\n|---|---|---|---|---|---|---|---|"
        "---|---|"
    )
    lines = [head]
    for r in rows:
        last = (
            "%.1f s" % r["last"]
            if r["last"] is not None
            else "not all within %.0f s" % r["waited"]
        )
        lines.append(
            "| %s | %s | %d | %s | %s | %d | %d | %d | %d | %d MB |"
            % (
                "with the outbox" if r["phase"] == "outbox" else "stock Eden",
                r["db"],
                r["n"],
                "%.2f s" % r["first"] if r["first"] is not None else "-",
                last,
                r["received"],
                r["duplicates"],
                r["missing"],
                r["connections"],
                r["peak_rss_mb"],
            )
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="volunteers (2000)")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument(
        "--runners", type=int, default=2, help="processes running process_outbox every 0.2 s (2)"
    )
    parser.add_argument(
        "--rtt", type=float, default=0.02, help="round trip to the relay, seconds (0.02)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds to wait for every member's mail (900)"
    )
    parser.add_argument(
        "--settle", type=float, default=8, help="seconds to keep counting after that (8)"
    )
    parser.add_argument(
        "--runner-start",
        type=float,
        default=8,
        help="seconds the runners get to load Eden's models (8)",
    )
    parser.add_argument("--no-stock", action="store_true", help="the outbox only")
    parser.add_argument("--folder", help="where to build (default: a new temp folder)")
    parser.add_argument(
        "--json", help="write the results here (default bench/results/eden-<UTC time>.json)"
    )
    args = parser.parse_args(argv)
    if tarball() is None:
        parser.error("no Eden snapshot in ../shared/eden-asp/")
    import tempfile

    from conftest import fresh_postgres

    folder = args.folder or tempfile.mkdtemp(prefix="eden-bench-")
    bench = Bench(args, multiprocessing.get_context("spawn"))
    try:
        if args.db in ("sqlite", "both"):
            bench.run_db("SQLite", None, os.path.join(folder, "sqlite"))
        if args.db in ("postgres", "both"):
            with fresh_postgres() as uri:
                bench.run_db("PostgreSQL", uri, os.path.join(folder, "postgres"))
    finally:
        bench.close()
    print(table(bench.results))
    path = args.json or os.path.join(
        HERE,
        "results",
        "eden-%s.json" % datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ"),
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dict(args=vars(args), results=bench.results), f, indent=1)
    bad = [
        r for r in bench.results if r["phase"] == "outbox" and (r["duplicates"] or r["missing"])
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
