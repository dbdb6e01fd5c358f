"""Crash run: worker processes drain an outbox on PostgreSQL while a
controller kill -9's one of them in the middle of a batch, again and again,
and starts it again. Optionally PostgreSQL itself is restarted mid-drain.

At the end it counts, against what the SMTP sink received:
- lost: queued messages that never arrived (must be 0);
- duplicated: extra deliveries of one Message-ID, and how many of them the
  kills explain (a killed worker had delivered it and died before recording
  it: the one window SMTP cannot close); a duplicate under a new Message-ID
  would show as one recipient getting two different Message-IDs;
- rows left ``sending`` past their lease, sampled during the run and at the end.

    python scripts/crashrun.py --messages 3000 --workers 4 --kills 40
    python scripts/crashrun.py --messages 2000 --kills 20 --pg-restart

Prints one JSON line of figures; exits 1 when any check fails.
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _path in (os.path.join(ROOT, "modules"), HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

DEFAULT_URI = os.environ.get("OUTBOX_TEST_POSTGRES", "postgres://postgres:@127.0.0.1:5432/test")
SENDER = "Crash run <crash@outbox.localhost>"
PG_RESTART = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart"


def _mail(db, args, migrate):
    from s3outbox import MailS3

    mail = MailS3(
        db, server=args.server, sender=SENDER, tls=False, tablename=args.table, migrate=migrate
    )
    s = mail.settings
    s.lease, s.batch_size, s.sessions = args.lease, args.batch, args.sessions
    s.retry_base, s.retry_max, s.probe_interval = 1, 2, 2
    return mail


# ------------------------------------------------------------------- worker
def worker(args):
    """One worker process: passes forever (mail.work), until killed."""
    import logging

    from pydal import DAL

    logging.basicConfig(level=logging.CRITICAL)
    db = DAL(args.uri, folder=tempfile.gettempdir(), migrate=False)
    mail = _mail(db, args, migrate=False)
    name = "%s-%d" % (args.name, os.getpid())
    mail.settings.worker_name = name
    mail.settings.hostname = name  # EHLO name: the sink knows who delivered
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    while True:
        mail.work(3600, poll=0.1)


# --------------------------------------------------------------- controller
def _tracing_sink(delay):
    from smtpsink import Sink

    class TracingSink(Sink):
        """Remembers, per Message-ID, the EHLO name of each delivering worker."""

        def __init__(self):
            Sink.__init__(self, delay=delay, keep=False)
            self.by_id = {}  # Message-ID -> [worker names]
            self.by_rcpt = {}  # recipient -> set of Message-IDs

        async def handle_DATA(self, server, session, envelope):
            reply = await Sink.handle_DATA(self, server, session, envelope)
            if reply.startswith("250"):
                data = envelope.original_content or envelope.content
                mid = re.search(rb"^Message-ID:\s*(\S+)", data, re.M | re.I)
                mid = mid.group(1).decode("ascii") if mid else None
                with self.lock:
                    self.by_id.setdefault(mid, []).append(session.host_name)
                    for rcpt in envelope.rcpt_tos:
                        self.by_rcpt.setdefault(rcpt, set()).add(mid)
            return reply

    return TracingSink()


class Controller:
    def __init__(self, args):
        from pydal import DAL

        self.args = args
        self.folder = tempfile.mkdtemp(prefix="crashrun-")
        self.db = DAL(args.uri, folder=self.folder)
        self.mail = _mail(self.db, args, migrate=True)
        self.store = self.mail.store
        self.procs = {}  # slot -> Popen
        self.names = {}  # slot -> current worker name
        self.killed = set()  # names of killed workers
        self.kills = 0
        self.max_overdue = 0.0  # seconds a row stayed sending past its lease
        self.restart = None  # figures of the PostgreSQL restart

    # --- database access that survives a PostgreSQL restart
    def q(self, fn):
        for _attempt in range(120):
            try:
                return fn(self.db)
            except Exception:
                try:
                    self.db.recycle_connection_in_pool_or_close("rollback")
                except Exception:
                    pass
                time.sleep(0.5)
        raise RuntimeError("the database did not come back")

    def enqueue(self):
        for i in range(self.args.messages):
            if not self.mail.send(
                "user%05d@people.net" % i, "Crash %d" % i, "Message %d of the crash run." % i
            ):
                raise RuntimeError(self.mail.error)
            if i % 500 == 499:
                self.db.commit()
        self.db.commit()

    def start(self, slot):
        a = self.args
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            "--name",
            "w%d" % slot,
            "--uri",
            a.uri,
            "--table",
            a.table,
            "--server",
            a.server,
            "--lease",
            str(a.lease),
            "--batch",
            str(a.batch),
            "--sessions",
            str(a.sessions),
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        self.procs[slot], self.names[slot] = proc, "w%d-%d" % (slot, proc.pid)

    def pending(self):
        o = self.store.outbox
        return self.q(lambda db: db(o.status.belongs(("queued", "sending", "held"))).count())

    def busy_slots(self):
        """Slots whose worker holds a lease right now (mid-batch)."""
        o = self.store.outbox
        owners = self.q(lambda db: db(o.status == "sending").select(o.lease_owner, distinct=True))
        names = {(r.lease_owner or "").split("/")[0] for r in owners}
        slots = [s for s, n in self.names.items() if n in names]
        return slots

    def sample_overdue(self):
        from s3outbox.delivery.store import utcnow

        o = self.store.outbox
        now = utcnow()
        row = self.q(
            lambda db: (
                db((o.status == "sending") & (o.lease_until < now))
                .select(o.lease_until.min())
                .first()
            )
        )
        oldest = row and row[o.lease_until.min()]
        if oldest:
            self.max_overdue = max(self.max_overdue, (now - oldest).total_seconds())

    def kill_one(self):
        slots = self.busy_slots() or list(self.procs)
        slot = random.choice(slots)
        proc = self.procs[slot]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        self.killed.add(self.names[slot])
        self.kills += 1
        self.start(slot)

    def restart_postgres(self):
        before = self.pending()
        began = time.monotonic()
        out = subprocess.run(PG_RESTART, shell=True, capture_output=True, text=True)
        took = time.monotonic() - began
        self.restart = dict(
            pending_before=before,
            restart_seconds=round(took, 1),
            rc=out.returncode,
            stderr=out.stderr.strip()[-200:],
        )

    def run(self):
        a = self.args
        started = time.monotonic()
        for slot in range(a.workers):
            self.start(slot)
        deadline = started + a.timeout
        restart_at = a.messages // 2
        while time.monotonic() < deadline:
            time.sleep(random.uniform(a.min_gap, a.max_gap))
            self.sample_overdue()
            left = self.pending()
            if left == 0:
                break
            if a.pg_restart and self.restart is None and left <= restart_at:
                self.restart_postgres()
                recovered = time.monotonic()
                continue
            if self.kills < a.kills:
                self.kill_one()
        drained = time.monotonic() - started
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.restart is not None:
            self.restart["drain_after_restart_seconds"] = round(time.monotonic() - recovered, 1)
        return drained

    def figures(self, sink, drained):
        o = self.store.outbox
        rows = self.q(lambda db: db(o).select(o.message_id, o.address, o.status))
        status = {}
        for r in rows:
            status[r.status] = status.get(r.status, 0) + 1
        queued_ids = {r.message_id for r in rows}
        delivered = sink.by_id
        lost = len(queued_ids - set(delivered))
        extra = {mid: len(v) - 1 for mid, v in delivered.items() if len(v) > 1}
        unexplained = 0
        for mid, n in extra.items():
            by_killed = sum(1 for name in delivered[mid] if name in self.killed)
            unexplained += max(0, n - by_killed)
        new_ids = sum(1 for ids in sink.by_rcpt.values() if len(ids) > 1)
        sending = status.get("sending", 0)
        return dict(
            messages=self.args.messages,
            workers=self.args.workers,
            lease=self.args.lease,
            batch=self.args.batch,
            kills=self.kills,
            seconds=round(drained, 1),
            status=status,
            lost=lost,
            not_from_outbox=len(set(delivered) - queued_ids),
            duplicated=sum(extra.values()),
            duplicated_messages=len(extra),
            duplicates_not_explained_by_kills=unexplained,
            duplicates_under_new_message_id=new_ids,
            sending_at_end=sending,
            max_seconds_sending_past_lease=round(self.max_overdue, 1),
            pg_restart=self.restart,
        )

    def drop(self):
        for suffix in ("_attempt", "_attachment", "_blob", "_state", ""):
            self.q(
                lambda db, suffix=suffix: (
                    db.executesql("DROP TABLE IF EXISTS %s%s" % (self.args.table, suffix)),
                    db.commit(),
                )
            )


def check(f, pg_restart):
    """The list of broken promises in figures ``f``.

    In-flight window: a kill can duplicate at most the batch the killed
    worker was sending; a database outage at most the batch each worker was
    sending while it could not record (workers x batch).
    """
    problems = []
    if f["lost"]:
        problems.append("%d message(s) lost" % f["lost"])
    if f["status"].get("sent", 0) != f["messages"]:
        problems.append("not all sent: %s" % f["status"])
    if f["sending_at_end"]:
        problems.append("%d row(s) still sending" % f["sending_at_end"])
    if f["max_seconds_sending_past_lease"] > f["lease"] + 5:
        problems.append(
            "a row stayed sending %ss past its lease" % f["max_seconds_sending_past_lease"]
        )
    if f["duplicates_under_new_message_id"]:
        problems.append("a recipient got two Message-IDs")
    outage = f["workers"] * f["batch"] if pg_restart else 0
    if f["duplicates_not_explained_by_kills"] > outage:
        problems.append(
            "%d duplicate(s) outside the in-flight window" % f["duplicates_not_explained_by_kills"]
        )
    if f["duplicated"] > f["kills"] * f["batch"] + outage:
        problems.append("more duplicates than kills x batch")
    return problems


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--kills", type=int, default=40)
    p.add_argument("--lease", type=int, default=3, help="settings.lease, seconds")
    p.add_argument("--batch", type=int, default=10, help="settings.batch_size")
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument(
        "--delay", type=float, default=0.01, help="sink delay before each SMTP reply, seconds"
    )
    p.add_argument("--min-gap", type=float, default=0.2)
    p.add_argument("--max-gap", type=float, default=0.8)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument(
        "--pg-restart", action="store_true", help="restart PostgreSQL when half the queue is left"
    )
    p.add_argument("--uri", default=DEFAULT_URI)
    p.add_argument("--seed", type=int)
    p.add_argument("--keep", action="store_true", help="keep the tables")
    # worker mode (internal)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--name", help=argparse.SUPPRESS)
    p.add_argument("--table", help=argparse.SUPPRESS)
    p.add_argument("--server", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    from smtpsink import SinkController

    random.seed(args.seed)
    args.table = args.table or "crash_%s" % uuid.uuid4().hex[:8]
    sink = _tracing_sink(args.delay)
    with SinkController(sink) as sc:
        args.server = sc.server_address
        ctl = Controller(args)
        try:
            ctl.enqueue()
            drained = ctl.run()
            time.sleep(0.2)  # the sink's last replies
            figures = ctl.figures(sink, drained)
        finally:
            for proc in ctl.procs.values():
                if proc.poll() is None:
                    proc.kill()
            if not args.keep:
                ctl.drop()
    problems = check(figures, args.pg_restart)
    figures["problems"] = problems
    print(json.dumps(figures, sort_keys=True), flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
