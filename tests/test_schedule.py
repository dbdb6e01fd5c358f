"""The delivery task in a real web2py Scheduler: registered once however often
the models run, brought back when it ended, as many as asked for.

The scheduler's tables have fixed names, so on PostgreSQL and MariaDB each
test gets a database of its own rather than share ``test`` with other runs.
"""

import datetime
import uuid

import pytest
from gluon import current
from gluon.scheduler import Scheduler
from gluon.storage import Storage
from pydal import DAL

from s3outbox.delivery.schedule import ensure_tasks

PREFIX = "s3outbox-outbox_deliver-"


def _server_uri(uri, name):
    """``uri`` with its database name replaced by ``name``."""
    head, _, tail = uri.partition("?")
    base = head.rpartition("/")[0]
    return "%s/%s%s" % (base, name, "?" + tail if tail else "")


@pytest.fixture
def sdb(db_uri, db, tmp_path):
    """A DAL on an empty database of its own."""
    engine = db._adapter.dbengine
    if engine == "sqlite":
        yield db
        return
    name = "tob_sched_%s" % uuid.uuid4().hex[:10]
    db.commit()
    raw = db._adapter.connection
    if engine == "postgres":
        raw.autocommit = True
    cursor = raw.cursor()
    cursor.execute("CREATE DATABASE %s" % name)
    own = DAL(_server_uri(db_uri, name), folder=str(tmp_path))
    try:
        yield own
    finally:
        own.close()
        cursor.execute("DROP DATABASE %s" % name)
        if engine == "postgres":
            raw.autocommit = False


@pytest.fixture
def scheduler(sdb, monkeypatch):
    """A Scheduler as the app's models make it (application name from the
    request, as in a web2py request or task run)."""
    monkeypatch.setattr(
        current, "request", Storage(application="outbox", controller="default"), raising=False
    )
    return Scheduler(sdb, tasks=dict(outbox_deliver=lambda: None), use_spawn=True)


def tasks(sdb):
    st = sdb.scheduler_task
    return sdb(st.uuid.startswith(PREFIX)).select(orderby=st.uuid)


def test_registering_twice_makes_one_task(sdb, scheduler):
    assert ensure_tasks(sdb, scheduler, "outbox_deliver", 60) is True
    assert ensure_tasks(sdb, scheduler, "outbox_deliver", 60) is True
    (task,) = tasks(sdb)
    assert task.uuid == PREFIX + "1" and task.function_name == "outbox_deliver"
    assert (task.status, task.enabled, task.period, task.repeats) == ("QUEUED", True, 60, 0)
    assert task.timeout > task.period and task.retry_failed == -1
    assert task.application_name == "outbox/default"


@pytest.mark.parametrize("status", ["STOPPED", "FAILED", "EXPIRED", "TIMEOUT"])
def test_ended_task_is_queued_again(sdb, scheduler, status):
    ensure_tasks(sdb, scheduler, "outbox_deliver", 60)
    (task,) = tasks(sdb)
    past = datetime.datetime.now() - datetime.timedelta(days=1)
    task.update_record(
        status=status,
        times_failed=5,
        stop_time=past,
        next_run_time=past + datetime.timedelta(days=30),
    )
    sdb.commit()
    assert ensure_tasks(sdb, scheduler, "outbox_deliver", 60) is True
    (again,) = tasks(sdb)
    assert again.id == task.id
    assert (again.status, again.enabled, again.times_failed, again.stop_time) == (
        "QUEUED",
        True,
        0,
        None,
    )
    assert again.next_run_time <= datetime.datetime.now()


def test_disabled_task_is_enabled_again(sdb, scheduler):
    ensure_tasks(sdb, scheduler, "outbox_deliver", 60)
    (task,) = tasks(sdb)
    task.update_record(enabled=False)
    sdb.commit()
    ensure_tasks(sdb, scheduler, "outbox_deliver", 60)
    assert tasks(sdb).first().enabled is True


def test_running_task_is_left_alone(sdb, scheduler):
    ensure_tasks(sdb, scheduler, "outbox_deliver", 60)
    (task,) = tasks(sdb)
    task.update_record(status="RUNNING", assigned_worker_name="host#1")
    sdb.commit()
    ensure_tasks(sdb, scheduler, "outbox_deliver", 60)
    (same,) = tasks(sdb)
    assert (same.status, same.assigned_worker_name) == ("RUNNING", "host#1")


def test_count_adds_and_removes_tasks(sdb, scheduler):
    ensure_tasks(sdb, scheduler, "outbox_deliver", 60, count=2)
    assert [t.uuid for t in tasks(sdb)] == [PREFIX + "1", PREFIX + "2"]
    ensure_tasks(sdb, scheduler, "outbox_deliver", 60, count=2)
    assert len(tasks(sdb)) == 2
    first = tasks(sdb).first().id
    ensure_tasks(sdb, scheduler, "outbox_deliver", 60, count=1)
    assert [(t.id, t.uuid) for t in tasks(sdb)] == [(first, PREFIX + "1")]


def test_period_change_updates_the_task(sdb, scheduler):
    ensure_tasks(sdb, scheduler, "outbox_deliver", 60)
    ensure_tasks(sdb, scheduler, "outbox_deliver", 120)
    (task,) = tasks(sdb)
    assert task.period == 120 and task.timeout > 120


def test_failed_registration_reports_and_is_not_cached(sdb, scheduler):
    """An unknown task function fails validation: nothing is written, and with
    a cache the check runs again on the next request."""
    assert ensure_tasks(sdb, scheduler, "no_such_function", 60) is False
    assert len(sdb(sdb.scheduler_task).select()) == 0
    from gluon.cache import CacheInRam

    cache = CacheInRam(Storage(application=uuid.uuid4().hex))  # not shared
    ensure_tasks(sdb, scheduler, "no_such_function", 60, cache=cache.__call__)
    key = "s3outbox-tasks-no_such_function-60-1"
    assert key not in cache.storage
    ensure_tasks(sdb, scheduler, "outbox_deliver", 60, cache=cache.__call__)
    assert len(tasks(sdb)) == 1
    # Cached: deleting the task behind its back is noticed only later.
    sdb(sdb.scheduler_task).delete()
    sdb.commit()
    ensure_tasks(sdb, scheduler, "outbox_deliver", 60, cache=cache.__call__)
    assert len(tasks(sdb)) == 0


def test_spawn_for_only_the_delivery_task(scheduler):
    """Eden's scheduler forks; only the delivery task's run is spawned."""
    from gluon.scheduler import Task

    from s3outbox.delivery.schedule import spawn_for

    seen = []
    scheduler.use_spawn = False
    scheduler.execute = lambda task: seen.append((task.function, scheduler.use_spawn))
    spawn_for(scheduler, "s3outbox_deliver")
    spawn_for(scheduler, "s3outbox_deliver")  # once, however often models run
    for function in ("s3outbox_deliver", "msg_process_outbox", "s3outbox_deliver"):
        scheduler.execute(Task("eden", function, 60))
    assert seen == [
        ("s3outbox_deliver", True),
        ("msg_process_outbox", False),
        ("s3outbox_deliver", True),
    ]
