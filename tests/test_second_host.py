"""Two hosts as docs/admin.md's "Several hosts" has them: two runtime folders,
each with its own copy of the app (the second without migration files), the
same PostgreSQL database given by a URI without a password, ``[scheduler]
tasks = 2``, a real ``web2py.py -K outbox`` worker on each."""

import time

from conftest import fresh_postgres
from helpers import wait_for
from pydal import DAL
from webapp import WebApp

from s3outbox import MailS3

N = 3000


def _problems(app, name):
    """Lines of the start-up failures this test is about (stopping a worker
    in the middle of its task logs a SystemExit traceback: not one)."""
    return [
        line
        for line in app.log(name).splitlines()
        if "already exists" in line
        or "Failure to connect" in line
        or "NoneType" in line
        or "OperationalError" in line
    ]


def test_second_host_starts_cleanly_and_both_send(tmp_path, sink):
    with fresh_postgres() as uri:
        assert ":@" not in uri and "@" in uri  # user, no password
        # Small batches: the drain lasts longer than an idle worker's 1 s
        # poll, so both workers take part.
        settings = {
            ("scheduler", "tasks"): "2",
            ("scheduler", "period"): "60",
            ("outbox", "batch_size"): "20",
        }
        first = WebApp(tmp_path / "host1", smtp=sink.server, db_uri=uri, settings=settings)
        second = WebApp(
            tmp_path / "host2", smtp=sink.server, db_uri=uri, settings=settings, worker=False
        )
        try:
            first.start()  # creates the tables
            # The second host's worker starts first, from an app copy that
            # has never migrated anything.
            second.start_worker()
            second.start()
            running = "SELECT COUNT(*) FROM scheduler_task WHERE status='RUNNING'"
            assert wait_for(lambda: first.query(running)[0][0] == 2, timeout=120), first.log(
                "worker"
            ) + second.log("worker")
            db = DAL(uri, folder=None)
            mail = MailS3(db, server=sink.server, migrate=False)
            for i in range(N):
                assert mail.send("reader%d@people.net" % i, "Note %d" % i, "Body"), mail.error
            db.commit()
            began = time.monotonic()
            assert wait_for(lambda: sink.count >= N, timeout=120), sink.count
            seconds = time.monotonic() - began
            # The sink counts a message before its worker reads the 250 and
            # records the batch: wait for the last batches' records.
            by_status = "SELECT status, COUNT(*) FROM msg_outbox GROUP BY status"
            wait_for(lambda: first.query(by_status) == [("sent", N)], timeout=60)
            by_worker = dict(
                first.query(
                    "SELECT worker, COUNT(*) FROM msg_outbox_attempt WHERE outcome='sent' "
                    "GROUP BY worker"
                )
            )
            statuses = first.query(by_status)
            db.close()
            workers = first.query("SELECT COUNT(*) FROM scheduler_worker")[0][0]
        finally:
            second.stop()
            first.stop()
        print(
            "two hosts on one PostgreSQL database (%s): %d sent in %.1f s, by "
            "worker %s, %d scheduler workers, statuses %s"
            % (
                uri.rpartition("/")[2],
                sink.count,
                seconds,
                sorted(by_worker.values()),
                workers,
                statuses,
            )
        )
        assert statuses == [("sent", N)]
        assert sink.count == N and not sink.duplicates()
        assert len(by_worker) == 2, by_worker  # both hosts sent mail
        assert workers == 2
        for app in (first, second):
            for name in ("web", "worker"):
                if name in app.logs:
                    assert _problems(app, name) == [], app.log(name)
            assert not app.errors()
