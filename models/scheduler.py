# -*- coding: utf-8 -*-
"""The delivery task for the web2py scheduler (python web2py.py -K outbox)."""

from gluon.scheduler import Scheduler

from s3outbox import retention
from s3outbox.schedule import ensure_tasks

OUTBOX_PERIOD = int(configuration.get("scheduler.period") or 60)


def outbox_deliver():
    """Deliver mail for one period, re-reading appconfig.ini before each pass."""
    def refresh(mail):
        apply_config(mail, AppConfig(reload=True).get)
        # Scrub sent account mail, purge old sent mail (when due; see retention.py).
        retention.tidy(mail, auth.flow_limiter)
    counts = mail.work(OUTBOX_PERIOD - 3, poll=1.0, refresh=refresh)
    db.commit()
    return counts


# use_spawn: a forked task process on SQLite can hang opening its connection.
scheduler = Scheduler(db, tasks=dict(outbox_deliver=outbox_deliver),
                      heartbeat=int(configuration.get("scheduler.heartbeat") or 3),
                      use_spawn=True)

ensure_tasks(db, scheduler, "outbox_deliver", OUTBOX_PERIOD,
             int(configuration.get("scheduler.tasks") or 1), cache.ram)
