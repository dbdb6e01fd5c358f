"""Secrets at rest: account-flow mail is marked when queued, shown redacted,
its body scrubbed once sent, and sent mail purged after a retention period.

Account-flow mail (verification, reset, username, two-factor code, approval)
carries live keys. A mark row (table ``<tablename>_flowmail``, tables.py)
names each such message and its flow, so the dashboard and command
line redact it and ``tidy()`` empties its body ``secret_retention`` seconds
after delivery. ``tidy()`` runs from the delivery task; it does its work at
most every ``TIDY_EVERY`` seconds per database (sooner when the retention is
shorter, so a key never outlives twice its retention), and purges sent mail
older than ``sent_retention_days`` at most once an hour.
"""

import datetime
import logging
import re

from ..delivery.check import Mailer
from ..delivery.holds import read_time, write_time
from ..delivery.pydal_internals import uri_hash
from ..delivery.store import OutboxStore, utcnow
from . import tables
from .flowlimit import FlowLimiter

logger = logging.getLogger("s3outbox")

TIDY_EVERY = 300
PURGE_EVERY = 3600
REDACTED = "[redacted]"
SCRUBBED = "[Removed from the outbox after delivery: this account mail held a one-time key.]"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# web2py's keys: reset "<unix time>-<uuid>", verification "<uuid>"; any key=
# in a link; the two-factor code is six digits (redacted in that flow only).
_SECRETS = (
    re.compile(r"\b(?:\d{1,12}-)?%s\b" % _UUID),
    re.compile(r"(?<=[?&;]key=)[^&;\s\"'<>]+"),
    re.compile(r"(?<=/verify_email/)[^/?#\s\"'<>]+"),
)
_CODE = re.compile(r"\b\d{4,10}\b")
CODE_FLOWS = ("login",)
_tidied: dict[tuple[str, str], datetime.datetime] = {}  # (database, table) -> may look again


def mark(store: OutboxStore, outbox_id: int, flow: str | None) -> None:
    """Record that message ``outbox_id`` belongs to an account flow."""
    tables.mark(store, outbox_id, flow)


def redact(text: str, flow: str | None = None) -> str:
    """``text`` with reset and verification keys (and, in the two-factor
    flow, the code) replaced by [redacted]."""
    if not text:
        return text
    for pattern in _SECRETS:
        text = pattern.sub(REDACTED, text)
    if flow in CODE_FLOWS:
        text = _CODE.sub(REDACTED, text)
    return text


def scrub_sent(mail: Mailer, retention: float, now: datetime.datetime | None = None) -> int:
    """Empty the bodies of marked messages sent more than ``retention``
    seconds ago; their marks go. Returns how many."""
    cutoff = (now or utcnow()) - datetime.timedelta(seconds=int(retention))
    return tables.scrub_sent(mail.store, cutoff, SCRUBBED)


def tidy(
    mail: Mailer, limiter: FlowLimiter | None = None, now: datetime.datetime | None = None
) -> dict[str, int] | None:
    """``_tidy`` that never stops a delivery pass: a failure is logged."""
    try:
        return _tidy(mail, limiter, now)
    except Exception:
        logger.exception("retention: tidying the outbox failed")
        mail.store.rollback()
        return None


def _tidy(
    mail: Mailer, limiter: FlowLimiter | None = None, now: datetime.datetime | None = None
) -> dict[str, int] | None:
    """Scrub, forget old rate-limit counters and purge old sent mail, when due.

    Cheap on every pass: a process looks at the shared ``tidy`` state row at
    most every ``TIDY_EVERY`` seconds, and the row lets one process at a time
    do the work. Returns what was done, or None when it was not due.
    """
    now = now or utcnow()
    store, s = mail.store, mail.settings
    every = datetime.timedelta(seconds=max(1, min(TIDY_EVERY, s.secret_retention)))
    where = (uri_hash(mail.db), mail.store.tablename)
    if now < _tidied.get(where, now) <= now + every:
        return None  # (a time beyond now + every: the retention was shortened)
    _tidied[where] = now + every
    old = store.get_state("tidy") or {}
    if "next" in old and now < read_time(old["next"]) <= now + every:
        return None
    new = dict(old, next=write_time(now + every))
    purge_due = ("purge" not in old or read_time(old["purge"]) <= now) and s.sent_retention_days
    if purge_due:
        new["purge"] = write_time(now + datetime.timedelta(seconds=PURGE_EVERY))
    if not store.take_turn("tidy", old or None, new, now):
        return None  # another process is on it
    done = dict(scrubbed=scrub_sent(mail, s.secret_retention, now), forgotten=0, purged=0)
    if limiter is not None:
        done["forgotten"] = limiter.forget_expired(now)
    if purge_due:
        done["purged"] = store.purge_sent(s.sent_retention_days, now, who="retention")[0]
    if done["scrubbed"]:
        logger.info("retention: scrubbed %d sent account mail(s)", done["scrubbed"])
    return done
