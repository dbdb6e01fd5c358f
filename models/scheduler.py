"""The delivery task for the web2py scheduler, in a group of its own:
python web2py.py -K outbox:s3outbox (./dev run starts it)."""

import logging

from gluon.scheduler import Scheduler

from s3outbox.accounts import retention
from s3outbox.delivery.schedule import deliver_when_idle, ensure_tasks

# [scheduler] KEY: (default, lowest, highest). Another value is named on the
# dashboard (response.outbox_findings) and in the log, and the default used:
# before, "abc" gave every page a ticket, and tasks = 10**30 had every page
# build a list that long (the web server was killed for its memory).
SCHEDULER_KEYS = dict(period=(60, 1, 86400), tasks=(1, 1, 100), heartbeat=(3, 1, 300))
response.outbox_findings = []


def scheduler_setting(key):
    """[scheduler] KEY as a whole number in its range, else its default."""
    default, low, high = SCHEDULER_KEYS[key]
    text = str((dict.get(configuration, "scheduler") or {}).get(key, "")).strip()
    if not text:
        return default
    if text.isascii() and text.isdigit() and len(text) < 7 and low <= int(text) <= high:
        return int(text)
    problem = "%s = %s cannot be used: expected a whole number from %d to %d; %d is used" % (
        key,
        text[:40],
        low,
        high,
        default,
    )
    where = "[scheduler] %s in private/appconfig.ini" % key
    response.outbox_findings.append(
        dict(
            key="[scheduler] " + key,
            file="private/appconfig.ini",
            blocking=False,
            where=where,
            problem=problem,
        )
    )
    cache.ram(
        "s3outbox-scheduler-" + problem,
        lambda: (
            logging.getLogger("s3outbox").error("mail settings: %s (edit %s)", problem, where)
            or True
        ),
        time_expire=None,
    )
    return default


OUTBOX_PERIOD = scheduler_setting("period")


def refresh_outbox(mail):
    """Before each pass: appconfig.ini again, then scrub sent account mail
    and purge old sent mail (when due; see retention.py)."""
    apply_config(mail, load_appconfig().get)
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
    heartbeat=scheduler_setting("heartbeat"),
    use_spawn=True,
)

ensure_tasks(
    db,
    scheduler,
    "outbox_deliver",
    OUTBOX_PERIOD,
    scheduler_setting("tasks"),
    cache.ram,
)
# A plain -K outbox worker delivers between tasks while no group worker runs.
deliver_when_idle(
    scheduler, lambda: mail.deliver_some(refresh_outbox, limit=mail.settings.batch_size)
)
