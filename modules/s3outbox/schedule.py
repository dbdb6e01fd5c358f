# -*- coding: utf-8 -*-
"""Registering the delivery task with the web2py scheduler, idempotently.

Each task runs ``MailS3.work()`` for about one period and is then started
again by the scheduler, so settings and code are re-read once a period at
least. Running ``count`` tasks lets that many workers drain at once.
"""

import datetime
import logging
import os
import signal
import threading

logger = logging.getLogger("s3outbox")

_LIVE = ("QUEUED", "ASSIGNED", "RUNNING")


def ensure_tasks(db, scheduler, function, period, count=1, cache=None):
    """Make sure ``count`` repeating tasks named s3outbox-FUNCTION-N exist.

    A task that ended (stopped, expired, failed for good) is queued again, so
    a failing pass never leaves mail without a worker. ``cache`` (web2py's
    ``cache.ram``) limits the check to once every five minutes a process.
    A worker that runs the tasks stops on SIGTERM or SIGINT (see
    stop_between_runs).
    """
    stop_between_runs(scheduler)
    def check():
        try:
            _ensure(db, scheduler, function, period, count)
            db.commit()
        except Exception:
            db.rollback()  # another process registered it first
            logger.exception("could not register the outbox delivery task")
            return False
        return True
    if cache is None:
        return check()
    key = "s3outbox-tasks-%s-%s-%s" % (function, period, count)
    if not cache(key, check, time_expire=300):
        cache(key, None)  # try again on the next request


def stop_between_runs(scheduler):
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

    def execute_until_stopped(task):
        if threading.current_thread() is not threading.main_thread():
            return execute(task)
        previous = taken_signals()

        def stop(signum, frame):
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


def taken_signals():
    """{signal: its handler now} for SIGTERM and SIGINT, but one that is
    ignored (a background job of a shell ignores SIGINT): it stays so."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    return {s: h for s, h in handlers.items() if h is not signal.SIG_IGN}


def restore(handlers):
    """Put back the signal handlers ``taken_signals()`` returned."""
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def _ensure(db, scheduler, function, period, count):
    st = db.scheduler_task
    prefix = "s3outbox-%s-" % function
    wanted = ["%s%d" % (prefix, n) for n in range(1, count + 1)]
    existing = {r.uuid: r for r in db(st.uuid.startswith(prefix)).select()}
    now = datetime.datetime.now()  # the scheduler's own times are local (request.now)
    settings = dict(period=period, timeout=period + 60, repeats=0, retry_failed=-1,
                    prevent_drift=True)
    for uuid in wanted:
        row = existing.get(uuid)
        if row is None:
            result = scheduler.queue_task(function, task_name=uuid, uuid=uuid,
                                          immediate=True, **settings)
            if result.errors:
                raise ValueError("queue_task: %s" % dict(result.errors))
        elif row.status not in _LIVE or not row.enabled:
            row.update_record(status="QUEUED", enabled=True, next_run_time=now,
                              times_failed=0, stop_time=None, **settings)
        elif row.period != period or row.timeout != period + 60:
            row.update_record(**settings)
    extra = [uuid for uuid in existing if uuid not in wanted]
    if extra:
        db(st.uuid.belongs(extra)).delete()
