"""Several worker processes on one database, as several scheduler workers on
several hosts would be: every message goes out exactly once, and the rate
limit holds across all of them.

Workers are started with the spawn method, each opening its own connection
and its own MailS3 on the same tables, like a web2py scheduler worker does.
"""

import multiprocessing
import time

from s3outbox.delivery.store import utcnow

SENDER = "Outbox <outbox@outbox.localhost>"


def _worker(uri, folder, tablename, server, settings, seconds, drain, start, results):
    """Run delivery passes; report (name, summed counts, errors).

    With ``drain`` stop once nothing is left to send; else run ``seconds``.
    """
    from pydal import DAL

    from s3outbox import MailS3

    kwargs = dict(driver_args={"timeout": 30}) if uri.startswith("sqlite") else {}
    db = DAL(uri, folder=folder, **kwargs)
    mail = MailS3(db, server=server, sender=SENDER, tls=False, tablename=tablename)
    for key, value in settings.items():
        mail.settings[key] = value
    o = mail.store.outbox
    total, errors = {}, []
    start.wait(60)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        counts = mail.process_outbox()
        if "error" in counts:
            errors.append(counts["error"])
        for key, value in counts.items():
            if isinstance(value, int):
                total[key] = total.get(key, 0) + value
        if drain and not counts["sent"]:
            left = db(o.status.belongs(("queued", "sending"))).count()
            db.commit()
            if not left:
                break
        if not drain:
            time.sleep(0.05)
    results.put((mail.settings.worker_name, total, errors))
    db.close()


def _work(uri, folder, tablename, server, seconds, start, results):
    """A worker as the scheduler task runs it: MailS3.work() polling."""
    from pydal import DAL

    from s3outbox import MailS3

    kwargs = dict(driver_args={"timeout": 30}) if uri.startswith("sqlite") else {}
    db = DAL(uri, folder=folder, **kwargs)
    mail = MailS3(db, server=server, sender=SENDER, tls=False, tablename=tablename)
    start.wait(60)
    results.put(mail.work(seconds, poll=1.0))
    db.close()


def run_workers(db_uri, folder, tablename, server, n, settings, seconds, drain=True):
    """Start ``n`` spawned workers together; return their reports."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(n), ctx.Queue()
    procs = []
    for i in range(n):
        mine = dict(settings, worker_name="worker-%d" % (i + 1))
        p = ctx.Process(
            target=_worker,
            args=(db_uri, folder, tablename, server, mine, seconds, drain, start, results),
        )
        p.start()
        procs.append(p)
    reports = [results.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0, p.exitcode
    return sorted(reports)


def enqueue(mail, n):
    for i in range(n):
        assert mail.send(
            "reader%d@people.net" % i, "Bulletin %d" % i, "Body of bulletin %d" % i
        ), mail.error
    mail.db.commit()


def test_four_workers_send_every_message_exactly_once(
    mail, db, sink, db_uri, tablename, tmp_path, record_property
):
    n = 2000
    began = time.monotonic()
    enqueue(mail, n)
    queued_in = time.monotonic() - began
    began = time.monotonic()
    reports = run_workers(
        db_uri, str(tmp_path), tablename, sink.server, 4, dict(batch_size=50), seconds=150
    )
    elapsed = time.monotonic() - began
    errors = [e for _, _, errs in reports for e in errs]
    assert errors == []
    o = mail.store.outbox
    db.commit()
    queued = {r.message_id for r in db(o).select(o.message_id)}
    received = sink.message_ids
    duplicated = sum(times - 1 for times in received.values())
    lost = len(queued - set(received))
    connections = sum(total.get("connections", 0) for _, total, _ in reports)
    figures = dict(
        engine=db._adapter.dbengine,
        lost=lost,
        duplicated=duplicated,
        connections=connections,
        seconds=round(elapsed, 1),
        enqueue_seconds=round(queued_in, 1),
        per_worker={name: total.get("sent", 0) for name, total, _ in reports},
    )
    record_property("four_workers", figures)
    print("four workers:", figures)
    assert lost == 0 and duplicated == 0
    assert len(received) == n and set(received) == queued
    assert sum(total["sent"] for _, total, _ in reports) == n
    statuses = db(o).select(o.status, o.attempts, distinct=True)
    assert [(r.status, r.attempts) for r in statuses] == [("sent", 1)]
    a = mail.store.attempt
    assert db(a.outcome == "sent").count() == n
    assert db(o.lease_owner != None).count() == 0  # noqa: E711


def test_rate_limit_holds_across_two_workers(mail, db, sink, db_uri, tablename, tmp_path):
    """20/minute between two workers polling for three seconds: 20 go out,
    the rest wait for the next minute."""
    enqueue(mail, 50)
    started = utcnow()
    reports = run_workers(
        db_uri,
        str(tmp_path),
        tablename,
        sink.server,
        2,
        dict(batch_size=3, rate_limit="20/minute"),
        seconds=3,
        drain=False,
    )
    assert [e for _, _, errs in reports for e in errs] == []
    assert sum(total["sent"] for _, total, _ in reports) == 20
    assert sink.count == 20 and not sink.duplicates()
    o = mail.store.outbox
    db.commit()
    assert db(o.status == "sent").count() == 20
    assert db(o.status == "queued").count() == 30
    a = mail.store.attempt
    assert db((a.outcome == "sent") & (a.attempted_on >= started)).count() == 20
    print("rate limit shares:", {name: total["sent"] for name, total, _ in reports})


def test_mail_queued_while_a_worker_runs_goes_out_promptly(
    mail, sink, db_uri, tablename, tmp_path, record_property
):
    """Enqueue-to-accepted time with a worker polling every second (the
    scheduler task's setting). Reported, not asserted: only that it arrives."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    worker = ctx.Process(
        target=_work, args=(db_uri, str(tmp_path), tablename, sink.server, 7, start, results)
    )
    worker.start()
    start.wait(60)
    latencies = []
    for i in range(4):
        assert mail.send("reader@people.net", "News %d" % i, "Body")
        mail.db.commit()
        queued, message_id = time.monotonic(), mail.result["message_id"]
        while message_id not in sink.message_ids and worker.is_alive():
            time.sleep(0.005)
        assert message_id in sink.message_ids
        latencies.append(time.monotonic() - queued)
    total = results.get(timeout=60)
    worker.join(30)
    assert total["sent"] == 4 and sink.count == 4 and not sink.duplicates()
    figures = dict(
        engine=db_uri.partition(":")[0],
        max=round(max(latencies), 3),
        mean=round(sum(latencies) / len(latencies), 3),
    )
    record_property("enqueue_to_accepted", figures)
    print("enqueue to accepted:", figures)
