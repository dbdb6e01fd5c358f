"""Registering the delivery task with the web2py scheduler, idempotently.

The task runs in a scheduler group of its own (GROUP), served by a worker of
its own (``python web2py.py -K APP:s3outbox``), and its ``MailS3.work()``
never ends: mail never waits for the scheduler to assign a run, and the
site's other tasks never wait behind delivery on their own workers. A worker
of the other groups (the plain ``-K APP``) delivers in its idle time only
while no worker of the group is alive (see deliver_when_idle). Running
``count`` tasks lets that many group workers drain at once.
"""

import datetime
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from .store import DAL

logger = logging.getLogger("s3outbox")

# gluon.scheduler's Scheduler, its tasks and their reports: no type information.
Scheduler = Any
Task = Any
TaskReport = Any
# A signal's handler, as signal.getsignal() gives it and signal.signal() takes it.
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class Cache(Protocol):
    """web2py's ``cache.ram``: the value cached under ``key``, made by ``f()``
    when it is missing or older than ``time_expire`` seconds (``f`` None:
    forget it)."""

    def __call__(
        self, key: str, f: Callable[[], object] | None, time_expire: float = ...
    ) -> object: ...


_LIVE = ("QUEUED", "ASSIGNED", "RUNNING")
GROUP = "s3outbox"  # the scheduler group of the delivery task: -K APP:s3outbox
# The task's timeout: its run ends on a stop signal (or a crash), else after
# 20 days, when it is queued again (retry_failed). The worker waits for the
# task process in steps of at most 2**31 ms, so no longer than 24 days.
FOREVER = 20 * 86400
SYNC_OUTPUT = 60  # how often the worker empties the task's output pipe


def ensure_tasks(
    db: DAL,
    scheduler: Scheduler,
    function: str,
    period: int,
    count: int = 1,
    cache: Cache | None = None,
    group: str = GROUP,
) -> bool | None:
    """Make sure ``count`` tasks named s3outbox-FUNCTION-N exist in ``group``.

    A task that ended (stopped, expired, failed for good) is queued again, so
    a failing pass never leaves mail without a worker; ``period`` is how soon
    a run that ended starts again. ``cache`` (web2py's ``cache.ram``) limits
    the check to once every five minutes a process. A worker that runs the
    tasks stops on SIGTERM or SIGINT (see stop_between_runs). Without
    ``cache``, whether the tasks are registered.
    """
    stop_between_runs(scheduler)

    def check() -> bool:
        try:
            _ensure(db, scheduler, function, period, count, group)
            db.commit()
        except Exception:  # the driver's own error class; the next check tries again
            db.rollback()  # another process registered it first
            logger.exception("could not register the outbox delivery task")
            return False
        return True

    if cache is None:
        return check()
    key = "s3outbox-tasks-%s-%s-%s" % (function, period, count)
    if not cache(key, check, time_expire=300):
        cache(key, None)  # try again on the next request
    return None


def stop_between_runs(scheduler: Scheduler) -> None:
    """Make a worker's SIGTERM or SIGINT (Ctrl-C) end the worker cleanly.

    web2py's worker takes a signal that arrives while it waits for a task
    process (almost always, since the delivery task runs for nearly its whole
    period) as the end of that run only: it kills the task process, records
    the run STOPPED and starts the next one. While a run goes on, this passes
    the signal on to the task process, whose ``MailS3.work()`` ends after its
    current pass (see mailer.stop_signals), and lets the worker exit once the
    run is recorded. Another task's process (in Eden) ends as web2py would
    end it. A second signal acts as web2py's own.
    """
    if getattr(scheduler, "_s3outbox_stops", False):
        return
    execute = scheduler.execute

    def execute_until_stopped(task: Task) -> TaskReport:
        if threading.current_thread() is not threading.main_thread():
            return execute(task)
        previous = taken_signals()

        def stop(signum: int, frame: FrameType | None) -> None:
            restore(previous)
            logger.info("worker stopping once its running task ends")
            scheduler.give_up()
            process = scheduler.process
            if process is not None and process.pid:
                try:
                    os.kill(process.pid, signal.SIGTERM)
                except OSError:
                    pass  # it just ended

        for signum in previous:
            signal.signal(signum, stop)
        try:
            return execute(task)
        finally:
            restore(previous)

    scheduler.execute = execute_until_stopped
    scheduler._s3outbox_stops = True


def deliver_when_idle(
    scheduler: Scheduler, deliver: Callable[[], object], group: str = GROUP
) -> None:
    """Let a worker of other groups deliver in its idle time, while no worker
    of ``group`` is alive (a site whose admin runs only the plain -K APP).

    web2py's worker sleeps a heartbeat whenever it finds no task; this runs
    ``deliver()`` (one pass of at most a batch) at the start of that sleep,
    in the worker's own process, and sleeps the rest. A task assigned
    meanwhile waits at most for that pass; while a worker of ``group`` is
    alive it costs one query a heartbeat. A stop signal during the pass ends
    the worker after it, as web2py would have ended it.
    """
    if getattr(scheduler, "_s3outbox_idle", False):
        return
    sleep = scheduler.sleep

    def sleep_or_deliver() -> None:
        if (
            threading.current_thread() is not threading.main_thread()
            or group in scheduler.group_names
            or scheduler.w_stats.status == "DISABLED"
        ):
            return sleep()  # the heartbeat thread, or a worker of the group
        started = time.monotonic()
        try:
            if not group_alive(scheduler, group):
                with_signals_deferred(deliver)
        except Exception:  # the worker's loop goes on whatever a pass did
            scheduler.db.rollback()
            logger.exception("delivery between tasks failed")
        time.sleep(max(0.0, scheduler.w_stats.sleep - (time.monotonic() - started)))

    scheduler.sleep = sleep_or_deliver
    scheduler._s3outbox_idle = True


def spawn_for(scheduler: Scheduler, function: str) -> None:
    """Start the runs of ``function`` with spawn rather than fork (a forked
    task process on SQLite can hang opening its connection); other tasks
    start as the scheduler was told."""
    if getattr(scheduler, "_s3outbox_spawns", False):
        return
    execute, default = scheduler.execute, scheduler.use_spawn

    def execute_spawning(task: Task) -> TaskReport:
        scheduler.use_spawn = default or task.function == function
        return execute(task)

    scheduler.execute = execute_spawning
    scheduler._s3outbox_spawns = True


def group_alive(scheduler: Scheduler, group: str) -> bool:
    """Whether a worker serving ``group`` sent a heartbeat lately (within
    the three heartbeats after which web2py counts a worker dead)."""
    db = scheduler.db
    sw = db.scheduler_worker
    since = scheduler.now() - datetime.timedelta(seconds=3 * scheduler.heartbeat)
    found = (
        db(sw.group_names.contains(group) & (sw.last_heartbeat > since))
        .select(sw.id, limitby=(0, 1))
        .first()
    )
    db.commit()
    return found is not None


def with_signals_deferred(run: Callable[[], object]) -> None:
    """``run()``, then a SIGTERM or SIGINT that came meanwhile, handled as
    it would have been (web2py's worker exits on either)."""
    previous = taken_signals()
    came: list[int] = []
    for signum in previous:
        signal.signal(signum, lambda signum, frame: came.append(signum))
    try:
        run()
    finally:
        restore(previous)
    if came:
        signal.raise_signal(came[0])


def taken_signals() -> dict[signal.Signals, Handler]:
    """{signal: its handler now} for SIGTERM and SIGINT, but one that is
    ignored (a background job of a shell ignores SIGINT): it stays so."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    return {s: h for s, h in handlers.items() if h is not signal.SIG_IGN}


def restore(handlers: dict[signal.Signals, Handler]) -> None:
    """Put back the signal handlers ``taken_signals()`` returned."""
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def _ensure(
    db: DAL, scheduler: Scheduler, function: str, period: int, count: int, group: str
) -> None:
    st = db.scheduler_task
    prefix = "s3outbox-%s-" % function
    wanted = ["%s%d" % (prefix, n) for n in range(1, count + 1)]
    existing = {r.uuid: r for r in db(st.uuid.startswith(prefix)).select()}
    now = datetime.datetime.now()  # the scheduler's own times are local (request.now)
    settings = dict(
        period=period,
        timeout=FOREVER,
        repeats=0,
        retry_failed=-1,
        prevent_drift=True,
        group_name=group,
        sync_output=SYNC_OUTPUT,
    )
    for uuid in wanted:
        row = existing.get(uuid)
        if row is None:
            result = scheduler.queue_task(
                function, task_name=uuid, uuid=uuid, immediate=True, **settings
            )
            if result.errors:
                raise ValueError("queue_task: %s" % dict(result.errors))
        elif row.status not in _LIVE or not row.enabled:
            row.update_record(
                status="QUEUED",
                enabled=True,
                next_run_time=now,
                times_failed=0,
                stop_time=None,
                **settings,
            )
        elif any(row[k] != v for k, v in settings.items()):
            row.update_record(**settings)
    extra = [uuid for uuid in existing if uuid not in wanted]
    if extra:
        db(st.uuid.belongs(extra)).delete()
