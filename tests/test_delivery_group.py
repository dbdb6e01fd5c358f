"""The app's delivery task in its scheduler group with a real worker: the
group's worker (``-K outbox:s3outbox``, what ./dev run starts) runs one
delivery loop that does not end, and a plain ``-K outbox`` worker alone
still gets mail out, between its tasks, without running the task."""

import time

from helpers import wait_for
from webapp import WebApp

RUNS = (
    "SELECT r.status, r.worker_name FROM scheduler_run r JOIN scheduler_task t "
    "ON r.task_id = t.id WHERE t.uuid LIKE 's3outbox-%'"
)


def register(app, email):
    r = app.submit(
        app.session(),
        "/default/user/register",
        dict(
            first_name="Ann",
            last_name="Lee",
            email=email,
            password="Secret123x",
            password_two="Secret123x",
        ),
    )
    assert r.status_code == 200


def test_group_worker_runs_one_loop_that_does_not_end(tmp_path, sink):
    with WebApp(tmp_path / "rt", smtp=sink.server) as app:  # period 20 s
        register(app, "ann@people.net")
        assert wait_for(lambda: sink.count == 1, timeout=90), app.log("worker")
        assert app.query(
            "SELECT group_name, status FROM scheduler_task WHERE uuid LIKE 's3outbox-%'"
        ) == [("s3outbox", "RUNNING")]
        time.sleep(25)  # past the period, after which a run used to end
        register(app, "bob@people.net")
        assert wait_for(lambda: sink.count == 2, timeout=90), app.log("worker")
        runs = app.query(RUNS)
        assert len(runs) == 1 and runs[0][0] == "RUNNING", runs


def test_plain_worker_alone_delivers_between_its_tasks(tmp_path, sink):
    with WebApp(tmp_path / "rt", smtp=sink.server, worker=False) as app:
        app.start_worker(group=None)
        register(app, "cy@people.net")
        assert wait_for(lambda: sink.count == 1, timeout=90), app.log("worker")
        # The sink has the mail before the worker reads its 250 and commits
        # the outcome: wait for that commit.
        sent = "SELECT status FROM msg_outbox"
        assert wait_for(lambda: app.query(sent) == [("sent",)], timeout=60), app.query(sent)
        ((worker,),) = app.query("SELECT worker FROM msg_outbox_attempt")
        assert worker.endswith("#%d" % app.procs["worker"].pid), worker
        assert app.query(RUNS) == []  # the task is the group's: never run here
