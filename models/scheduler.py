"""The delivery task for the web2py scheduler, in a group of its own:
python web2py.py -K outbox:s3outbox (./dev run starts it)."""

from gluon.scheduler import Scheduler

from s3outbox.accounts import retention
from s3outbox.delivery.schedule import deliver_when_idle, ensure_tasks

OUTBOX_PERIOD = int(configuration.get("scheduler.period") or 60)


def refresh_outbox(mail):
    """Before each pass: appconfig.ini again, then scrub sent account mail
    and purge old sent mail (when due; see retention.py)."""
    apply_config(mail, AppConfig(reload=True).get)
    retention.tidy(mail, auth.flow_limiter)


def outbox_deliver():
    """Deliver until the worker is stopped, re-reading appconfig.ini before
    each pass."""
    counts = mail.work(refresh=refresh_outbox)
    db.commit()
    return counts


# use_spawn: a forked task process on SQLite can hang opening its connection.
scheduler = Scheduler(
    db,
    tasks=dict(outbox_deliver=outbox_deliver),
    heartbeat=int(configuration.get("scheduler.heartbeat") or 3),
    use_spawn=True,
)

ensure_tasks(
    db,
    scheduler,
    "outbox_deliver",
    OUTBOX_PERIOD,
    int(configuration.get("scheduler.tasks") or 1),
    cache.ram,
)
# A plain -K outbox worker delivers between tasks while no group worker runs.
deliver_when_idle(
    scheduler, lambda: mail.deliver_some(refresh_outbox, limit=mail.settings.batch_size)
)
