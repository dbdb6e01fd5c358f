"""The failure rule across time and hosts.

- A server that takes no connection for longer than ``max_attempts`` and
  ``max_age`` allow costs no message: all of it is held, probed, and sent
  once the server answers.
- Two hosts with different settings on one database: the one whose settings
  fail takes no mail from the one whose settings work, and held mail is
  released only by a worker whose settings reached the server.
"""

import datetime
import multiprocessing
import socket
import time

import pytest
from helpers import free_port, wait_for
from smtpsink import Sink, SinkController

from s3outbox import MailS3
from s3outbox.delivery.engine import Pass
from s3outbox.delivery.store import utcnow

SENDER = "Outbox <outbox@outbox.localhost>"
TINY = dict(max_attempts=2, max_age=2, retry_base=1, retry_max=1, probe_interval=1, timeout=0.5)
sqlite_and_postgres = pytest.mark.parametrize("db_uri", ["sqlite", "postgres"], indirect=True)


def queue(mail, n, first=0):
    for i in range(first, first + n):
        assert mail.send("reader%d@people.net" % i, "Note %d" % i, "Body %d" % i), mail.error
    mail.db.commit()


def outcomes(mail):
    """{outbox id: [attempt outcomes in order]}."""
    a = mail.store.attempt
    found = {}
    for r in mail.db(a).select(a.outbox_id, a.outcome, orderby=a.attempted_on | a.id):
        found.setdefault(r.outbox_id, []).append(r.outcome)
    return found


def statuses(mail):
    o = mail.store.outbox
    mail.db.commit()
    return sorted((r.status, r.attempts) for r in mail.db(o).select(o.status, o.attempts))


# ------------------------------------------------------------------ outage
def test_server_that_accepts_nothing_for_longer_than_retries_allow(mail, db):
    """A listening socket that never accepts, for longer than max_age and
    more probes than max_attempts; then a server opens on that port: 0
    failed, all sent, each with one attempt."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # the kernel completes one handshake; nobody ever answers
    port = silent.getsockname()[1]
    mail.settings.server = "127.0.0.1:%d" % port
    for key, value in TINY.items():
        mail.settings[key] = value
    key = Pass(mail).key
    began = utcnow()
    probes, passes = set(), 0
    try:
        queue(mail, 5)
        while (utcnow() - began).total_seconds() <= TINY["max_age"] * 2 or len(probes) <= TINY[
            "max_attempts"
        ] + 1:
            counts = mail.process_outbox()
            assert counts["failed"] == 0 and "error" not in counts, counts
            passes += 1
            if passes == 3:
                queue(mail, 5, first=5)  # mail queued during the outage
            hold = mail.store.get_hold(key)
            if hold:
                probes.add(hold.probe_after)
            time.sleep(0.1)
        outage = (utcnow() - began).total_seconds()
        assert statuses(mail) == [("held", 0)] * 10
    finally:
        silent.close()
    sink = Sink()
    with SinkController(sink, port=port):

        def drained():
            counts = mail.process_outbox()
            assert counts["failed"] == 0, counts
            return statuses(mail) == [("sent", 1)] * 10

        assert wait_for(drained, timeout=30, step=0.2)
    log = outcomes(mail)
    print(
        "outage: %.1f s (max_age %d s), %d probe turns (max_attempts %d), "
        "%d passes; then sent %d, failed 0"
        % (outage, TINY["max_age"], len(probes), TINY["max_attempts"], passes, sink.count)
    )
    assert outage > TINY["max_age"] and len(probes) > TINY["max_attempts"]
    assert sink.count == 10 and not sink.duplicates()
    assert all(history == ["held", "sent"] for history in log.values()), log
    assert mail.store.get_hold(key) is None


def test_time_held_is_not_charged_to_max_age(mail, db, sink):
    """A message held for two hours, then deferred by its recipient's
    server, is retried: max_age counts only the time it was not held."""
    mail.settings.max_age = 3600
    sink.script["RCPT"] = "451 4.7.1 greylisted"
    queue(mail, 1)
    o, long_ago = mail.store.outbox, utcnow() - datetime.timedelta(hours=2)
    row = db(o).select().first()
    row.update_record(created_on=long_ago)
    mail.store._insert_attempts([(row.id, long_ago, "w", "held", None, "outage")])
    db.commit()
    counts = mail.process_outbox()
    assert counts["retry"] == 1 and counts["failed"] == 0, counts
    row.update_record(created_on=long_ago - datetime.timedelta(hours=1), next_attempt_on=long_ago)
    db.commit()
    counts = mail.process_outbox()  # 3 h old, 1 h of it not held: give up
    assert counts["failed"] == 1, counts


# ------------------------------------------------------------- two hosts
def _host(uri, folder, tablename, settings, stop, start, results):
    """A worker on its own 'host' (the part of worker_name before '#'),
    until ``stop`` is set."""
    from pydal import DAL

    from s3outbox import MailS3

    kwargs = dict(driver_args={"timeout": 30}) if uri.startswith("sqlite") else {}
    db = DAL(uri, folder=folder, **kwargs)
    mail = MailS3(db, sender=SENDER, tls=False, tablename=tablename)
    for key, value in settings.items():
        mail.settings[key] = value
    total = {}
    start.wait(60)
    deadline = time.monotonic() + 300  # a bound, should the test never stop it
    while not stop.is_set() and time.monotonic() < deadline:
        for key, value in mail.process_outbox().items():
            total[key] = total.get(key, 0) + value if isinstance(value, int) else value
        time.sleep(0.05)
    results.put((mail.settings.worker_name, total))
    db.close()


def _mailer(db, tablename, server, name):
    m = MailS3(db, server=server, sender=SENDER, tls=False, tablename=tablename)
    for key, value in dict(TINY, timeout=5, probe_interval=2, worker_name=name).items():
        m.settings[key] = value
    return m


@sqlite_and_postgres
def test_hosts_with_different_settings(mail, db, sink, db_uri, tablename, tmp_path):
    broken = "127.0.0.1:%d" % free_port()  # host A's server: nothing listens
    a = _mailer(db, tablename, broken, "host-a#1")
    queue(a, 20)
    # Host A alone: its settings fail, nobody's work, so it holds the mail.
    assert a.process_outbox()["held"] == 20
    # A's admin edits its settings, still wrong: the new settings have not
    # reached the server, so they release nothing.
    a2 = _mailer(db, tablename, "127.0.0.1:%d" % free_port(), "host-a#1")
    counts = a2.process_outbox()
    assert counts["released"] == 0 and counts["sent"] == 0, counts
    assert statuses(a) == [("held", 0)] * 20

    # Host B (working settings) and host A side by side, as two processes.
    ctx = multiprocessing.get_context("spawn")
    start, stop, results = ctx.Barrier(3), ctx.Event(), ctx.Queue()
    hosts = [("host-a#1", broken), ("host-b#1", sink.server)]
    procs = []
    for name, server in hosts:
        # A counts B's settings as working while they reached the server
        # within probe_interval: 2 s held A's new mail whenever B, on a busy
        # machine, went 2 s without sending.
        settings = dict(TINY, timeout=5, probe_interval=30, worker_name=name, server=server)
        p = ctx.Process(
            target=_host, args=(db_uri, str(tmp_path), tablename, settings, stop, start, results)
        )
        p.start()
        procs.append(p)
    start.wait(60)
    began = time.monotonic()
    # B probes, releases the 20 held and sends them.
    assert wait_for(lambda: statuses(a) == [("sent", 1)] * 20, timeout=30)
    for i in range(40):  # new mail while both run: only B may take it
        queue(a, 1, first=100 + i)
        time.sleep(0.1)
    # Both run for 12 s and until all of it is out (12 s alone could end them
    # with mail still queued on a busy machine).
    wait_for(lambda: statuses(a) == [("sent", 1)] * 60, timeout=60)
    time.sleep(max(0, began + 12 - time.monotonic()))
    stop.set()
    reports = dict(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert statuses(a) == [("sent", 1)] * 60
    log = outcomes(a)
    first = sorted(log)[:20]
    assert all(log[i] == ["held", "sent"] for i in first), log
    assert all(log[i] == ["sent"] for i in sorted(log)[20:]), log  # never held
    print(
        "two hosts on %s: A %s, B %s"
        % (db._adapter.dbengine, reports["host-a#1"], reports["host-b#1"])
    )
    assert reports["host-a#1"].get("sent", 0) == 0
    assert reports["host-a#1"].get("held", 0) == 0
    assert reports["host-b#1"]["sent"] == 60 and reports["host-b#1"]["released"] == 20
    assert sink.count == 60 and not sink.duplicates()
