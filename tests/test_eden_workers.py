"""The outbox's workers in a real Sahana Eden: the delivery task in a
scheduler group of its own (``-K eden:s3outbox``) beside Eden's own worker
(``-K eden``), Eden's plain worker delivering while no group worker runs, a
pause that holds, and --uninstall with mail waiting.

One Eden, built without the outbox (so its files can be compared after
--uninstall), then installed, is shared by the tests of this module, in order.
"""

import os
import re
import subprocess
import sys
import time

import pytest
from conftest import running_sink
from edenapp import INSTALLER, EdenApp, tarball
from helpers import wait_for
from test_eden import SENDER, login, received, value
from webapp import FORMKEY_RE

pytestmark = pytest.mark.skipif(
    tarball() is None, reason="no Sahana Eden snapshot in ../shared/eden-asp/"
)

TASK = "scheduler_task WHERE uuid LIKE 's3outbox-%'"
# What --uninstall must leave as it was: Eden's code, not its data or caches.
VOLATILE = ("databases", "errors", "sessions", "cache", "uploads", "__pycache__")


def code_files(folder):
    """{path: bytes} of every file of Eden's but data, caches and bytecode."""
    found = {}
    for path, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in VOLATILE]
        for name in files:
            if not name.endswith(".pyc"):
                full = os.path.join(path, name)
                with open(full, "rb") as f:
                    found[os.path.relpath(full, folder)] = f.read()
    return found


@pytest.fixture(scope="module")
def sink():
    with running_sink() as handler:
        yield handler


@pytest.fixture(scope="module")
def eden(tmp_path_factory, sink):
    app = EdenApp(
        tmp_path_factory.mktemp("edenw") / "rt",
        install=False,
        mail=dict(server=sink.server, sender=SENDER),
    ).build()
    app.pristine = code_files(app.app)
    app.installer()
    with app:
        yield app


def send(eden, to, subject):
    """Eden's msg.send_email(to, subject) in a web2py shell (models loaded)."""
    assert value(eden.shell("send_email", to, subject, "", ""), "ok") == "True"


def dashboard(eden, action):
    """POST a dashboard action as Eden's admin, with the page's form key."""
    s = login(eden, "admin@example.com")
    r = s.get(eden.url("/outbox/index"), timeout=60)
    key = FORMKEY_RE.search(r.text).group(1)
    r = s.post(eden.url("/outbox/" + action), data=dict(_formkey=key), timeout=60)
    assert r.ok, r.text[:2000]
    return s.get(eden.url("/outbox/index"), timeout=60).text


def test_group_worker_delivers_in_one_run_that_does_not_end(eden, sink):
    send(eden, "first@people.net", "First through the group")
    assert wait_for(lambda: received(sink, "first@people.net"), timeout=90), eden.log("worker")
    ((group, status),) = eden.query("SELECT group_name, status FROM " + TASK)
    assert (group, status) == ("s3outbox", "RUNNING")
    runs = eden.query(
        "SELECT r.status, r.worker_name FROM scheduler_run r JOIN "
        "scheduler_task t ON r.task_id = t.id WHERE t.uuid LIKE "
        "'s3outbox-%'"
    )
    assert len(runs) == 1 and runs[0][0] == "RUNNING", runs
    workers = dict(eden.query("SELECT worker_name, group_names FROM scheduler_worker"))
    assert "s3outbox" in workers[runs[0][1]] and len(workers) == 2, workers
    # A minute and more later the same run still delivers (it used to end
    # after 57 s and wait for the scheduler to start the next one).
    time.sleep(65)
    send(eden, "second@people.net", "Second through the group")
    assert wait_for(lambda: received(sink, "second@people.net"), timeout=90)
    assert eden.query(
        "SELECT COUNT(*) FROM scheduler_run r JOIN scheduler_task t "
        "ON r.task_id = t.id WHERE t.uuid LIKE 's3outbox-%'"
    ) == [(1,)]
    # Eden's own tasks still run, on Eden's own worker.
    eden.shell("process_outbox")


def test_pause_from_edens_dashboard_holds_across_model_reloads(eden, sink):
    page = dashboard(eden, "pause")
    assert "Delivery is paused" in page and "Resume delivery" in page
    # Every process that loads Eden's models checks the task (ensure_tasks):
    # the pause is not the task's state, so it stays.
    send(eden, "paused@people.net", "Sent while paused")
    eden.stop_worker("worker")
    eden.start_worker("worker")
    eden.wait_worker()
    time.sleep(8)  # the worker's loop looks for mail many times meanwhile
    assert eden.query(
        "SELECT status FROM msg_mail_outbox WHERE address=?", ("paused@people.net",)
    ) == [("queued",)]
    assert not received(sink, "paused@people.net")
    page = dashboard(eden, "resume")
    assert "Delivery is running" in page
    assert wait_for(lambda: received(sink, "paused@people.net"), timeout=90), eden.log("worker")


def test_edens_plain_worker_alone_still_gets_mail_out(eden, sink):
    eden.stop_worker("worker")  # only Eden's usual -K eden is left
    plain = eden.procs["eden"].pid
    send(eden, "plain@people.net", "Through Eden's own worker")
    assert wait_for(lambda: received(sink, "plain@people.net"), timeout=120), eden.log("eden")
    # The sink has the mail before the worker reads its 250 and commits the
    # attempt: wait for that commit.
    attempts = wait_for(
        lambda: eden.query(
            "SELECT a.worker FROM msg_mail_outbox_attempt a JOIN msg_mail_outbox o ON "
            "a.outbox_id = o.id WHERE o.address=?",
            ("plain@people.net",),
        ),
        timeout=60,
    )
    ((worker,),) = attempts
    assert worker.endswith("#%d" % plain), worker
    # The delivery task itself never ran there: it is the group's.
    assert not eden.query(
        "SELECT 1 FROM scheduler_run r JOIN scheduler_task t ON "
        "r.task_id = t.id WHERE t.uuid LIKE 's3outbox-%' AND "
        "r.worker_name LIKE ?",
        ("%#" + str(plain),),
    )


def test_uninstall_refuses_while_mail_waits_then_force_removes_the_task(eden, sink):
    dashboard(eden, "pause")
    eden.stop()  # the site is stopped for the uninstall
    send(eden, "waiting@people.net", "Waiting at uninstall")
    # One from Eden's Messaging too: Sent in Eden once handed over.
    pe_id = value(eden.shell("pe_id", "normaluser@example.com"), "pe_id")
    eden_id = value(eden.shell("send_by_pe_id", pe_id, "Eden's at uninstall"), "eden_outbox")
    eden.shell("process_outbox")
    assert "status=2" in eden.shell("eden_status", eden_id)
    before = code_files(eden.app)
    refused = subprocess.run(
        [sys.executable, INSTALLER, eden.app, "--uninstall"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert re.search(
        r"2 message\(s\) are waiting in the outbox \(2 queued\); 1 of "
        r"them came from Eden's",
        refused.stderr,
    ), refused.stderr
    assert "--uninstall --force" in refused.stderr and "Delivery is paused" in refused.stderr
    assert code_files(eden.app) == before
    assert eden.query("SELECT COUNT(*) FROM " + TASK) == [(1,)]

    done = subprocess.run(
        [sys.executable, INSTALLER, eden.app, "--uninstall", "--force"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed   the delivery task" in done.stdout, done.stdout
    assert eden.query("SELECT COUNT(*) FROM " + TASK) == [(0,)]
    assert eden.query(
        "SELECT status FROM msg_mail_outbox WHERE address=?", ("waiting@people.net",)
    ) == [("cancelled",)]
    # Eden's own row is Unsent again: Eden's process_outbox sends it now.
    assert eden.query("SELECT status FROM msg_outbox WHERE id=?", (int(eden_id),)) == [(1,)]
    after = code_files(eden.app)
    assert sorted(after) == sorted(eden.pristine)
    assert all(after[name] == eden.pristine[name] for name in after)
