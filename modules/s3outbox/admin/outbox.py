"""What the site admin sees and does: the queries and actions behind the
outbox dashboard (controllers/outbox.py) and the command line
(scripts/outbox.py), so both behave the same.

Queries stay fast on a large outbox: counts are one GROUP BY, the oldest
waiting message is a MIN per status on the (status, created_on) index, the
list pages by id (keyset: ``before``/``after`` an id, never OFFSET), and the
activity chart (drawn by chart.py) is one GROUP BY over the attempt log's
time index.
Nothing here ever shows a password the settings hold: text that reaches
the admin passes through ``scrub()``. Account mail is shown with its keys and codes
redacted (accounts/retention.py).
"""

import datetime
import json
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from ..accounts import retention, tables
from ..delivery.check import Mailer, config_file, findings, scrub
from ..delivery.holds import in_force
from ..delivery.message import Addresses, Body, bare
from ..delivery.settings import Snapshot
from ..delivery.store import PAUSE, STATUSES, Logged, Query, Row, Status, utcnow
from .chart import COLOURS, Activity
from .params import MAX_DAYS, whole_number
from .summary import edit_hint, settings_summary

logger = logging.getLogger("s3outbox")

WAITING = (Status.QUEUED, Status.SENDING, Status.HELD)
RETRYABLE = (Status.FAILED, Status.HELD)
CANCELLABLE = (Status.QUEUED, Status.HELD, Status.FAILED)


class AdminMail(Mailer, Protocol):
    """What the admin's view uses of the mailer (MailS3: admin/ may not
    import mailer.py, which sits above it)."""

    error: str | None
    result: dict[str, Any]
    reply: str | None

    def pause(self, who: str) -> bool: ...
    def resume(self, who: str) -> bool: ...
    def send_direct_email(
        self, to: Addresses, subject: str | None = ..., message: Body = ...
    ) -> bool: ...


def format_age(delta: datetime.timedelta) -> str:
    """'45 s', '12 min', '3 h 5 min', '2 d 4 h' for a timedelta."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return "%d s" % seconds
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return "%d min" % minutes
    if hours < 24:
        return "%d h %d min" % (hours, minutes % 60)
    return "%d d %d h" % (days, hours % 24)


# --------------------------------------------------------------- the outbox
class Page:
    """One page of the message list: ``rows`` newest first, and the ids to
    pass as ``after`` (newer page) or ``before`` (older page), or None."""

    def __init__(self, rows: list[Row], newer: int | None, older: int | None) -> None:
        self.rows, self.newer, self.older = rows, newer, older


class OutboxAdmin:
    """The admin's view of one MailS3's outbox."""

    LIST_FIELDS = (
        "id",
        "created_on",
        "status",
        "address",
        "pe_id",
        "subject",
        "priority",
        "attempts",
        "next_attempt_on",
        "sent_on",
        "last_code",
        "last_error",
    )

    def __init__(self, mail: AdminMail) -> None:
        self.mail = mail
        self.settings = mail.settings
        self.store = mail.store
        self.db = mail.db
        self.outbox = self.store.outbox

    # ------------------------------------------------------------ overview
    def counts(self) -> dict[str, int]:
        """{status: number of messages} for every status, zeros included."""
        found = self.store.count_by_status()
        return dict((s, int(found.get(s, 0))) for s in STATUSES)

    def oldest_waiting(self) -> datetime.datetime | None:
        """created_on of the oldest message not yet sent, failed or cancelled."""
        o = self.outbox
        first = o.created_on.min()
        times = [self.db(o.status == s).select(first).first()[first] for s in WAITING]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def recent(self, now: datetime.datetime | None = None) -> dict[str, dict[str, int]]:
        """Attempts that sent and attempts that failed a message, in the last
        hour and day, from the attempt log (a message is one attempt that
        sent or failed it: a retried one counts each time)."""
        now = now or utcnow()
        a = self.store.attempt
        n = a.id.count()
        out: dict[str, dict[str, int]] = {}
        for name, seconds in (("hour", 3600), ("day", 86400)):
            since = now - datetime.timedelta(seconds=seconds)
            found = {
                r[a.outcome]: r[n]
                for r in self.db(
                    (a.attempted_on > since) & a.outcome.belongs((Logged.SENT, Logged.FAILED))
                ).select(a.outcome, n, groupby=a.outcome)
            }
            out[name] = dict(sent=found.get(Logged.SENT, 0), failed=found.get(Logged.FAILED, 0))
        return out

    def held(self) -> dict[str, Any] | None:
        """The hold in force, for the banner, or None: the hold of the
        current settings, else (while mail is held) the latest other one,
        with the setting and file to edit as the host app names them
        (``settings.config_names``; Sahana Eden: models/000_config.py)."""
        current = Snapshot(self.settings).fingerprint()
        count = self.store.count_held()
        hold = in_force(self.store.read_holds()[0].values(), current, count > 0)
        if hold is None:
            return None
        reason = scrub(hold.reason, self.settings)
        return dict(
            reason=reason,
            edit=edit_hint(reason, self.settings.config_names),
            file=config_file(self.settings),
            count=count,
            settings_changed=hold.fp != current,
        )

    def overview(self, now: datetime.datetime | None = None) -> dict[str, Any]:
        now = now or utcnow()
        counts = self.counts()
        oldest = self.oldest_waiting()
        return dict(
            counts=counts,
            total=sum(counts.values()),
            waiting=sum(counts[s] for s in WAITING),
            oldest=oldest,
            oldest_age=(now - oldest) if oldest else None,
            recent=self.recent(now),
            held=self.held(),
            paused=self.store.get_state(PAUSE),
            findings=findings(self.settings),
            settings=settings_summary(self.settings),
        )

    # ---------------------------------------------------------------- list
    def page(
        self,
        status: str | None = None,
        address: str | None = None,
        before: int | None = None,
        after: int | None = None,
        size: int = 50,
    ) -> Page:
        """A page of messages, newest first, filtered by status and address.

        ``address`` matches any part of the recipient, case-insensitively.
        Keyset paging (``before``/``after`` an id) costs the same on page 1
        and page 2,000.
        """
        o = self.outbox
        query = o.id > 0
        if status:
            query &= o.status == status
        if address:
            query &= self.store.address_contains(address.strip())
        fields = [o[f] for f in self.LIST_FIELDS]
        if after is not None:
            rows = list(
                self.db(query & (o.id > after)).select(
                    *fields, orderby=o.id, limitby=(0, size + 1)
                )
            )
            more_newer = len(rows) > size
            rows = rows[:size][::-1]
            more_older = bool(rows) and self._exists(query & (o.id < rows[-1].id))
        else:
            if before is not None:
                query_page = query & (o.id < before)
            else:
                query_page = query
            rows = list(self.db(query_page).select(*fields, orderby=~o.id, limitby=(0, size + 1)))
            more_older = len(rows) > size
            rows = rows[:size]
            more_newer = (
                before is not None and bool(rows) and self._exists(query & (o.id > rows[0].id))
            )
        tries = self.tries([row.id for row in rows])
        for row in rows:
            row.last_error = scrub(row.last_error, self.settings)
            row.tries = tries.get(row.id, 0)
        return Page(
            rows,
            rows[0].id if rows and more_newer else None,
            rows[-1].id if rows and more_older else None,
        )

    def _exists(self, query: Query) -> bool:
        return bool(self.db(query).select(self.outbox.id, limitby=(0, 1)))

    def tries(self, ids: list[int]) -> dict[int, int]:
        """{message id: its delivery attempts in the attempt log}: what the
        admin sees as Tries, kept across manual retries (which start the
        ``attempts`` towards ``max_attempts`` again)."""
        if not ids:
            return {}
        a = self.store.attempt
        n = a.id.count()
        return {
            r[a.outbox_id]: r[n]
            for r in self.db(a.outbox_id.belongs(ids)).select(a.outbox_id, n, groupby=a.outbox_id)
        }

    def message(self, message_id: int) -> dict[str, Any] | None:
        """(row, content, attempts, attachments) for one message, or None."""
        o, a, t = self.outbox, self.store.attempt, self.store.attachment
        row = self.db(o.id == message_id).select().first()
        if row is None:
            return None
        row.last_error = scrub(row.last_error, self.settings)
        content = self.store.content(row) or {}
        flow = tables.flows(self.store, [row.id]).get(row.id)
        for key in ("text", "html"):
            if isinstance(content.get(key), str):
                content[key] = retention.redact(content[key], flow)
        attempts = self.db(a.outbox_id == row.id).select(orderby=a.attempted_on | a.id)
        for attempt in attempts:
            attempt.error = scrub(attempt.error, self.settings)
        row.tries = len(attempts)
        files = self.db(t.outbox_id == row.id).select(
            t.seq, t.kind, t.filename, t.content_type, orderby=t.seq
        )
        refused = json.loads(row.refused) if row.refused else {}
        sender = (self.settings.config_names or {}).get("[smtp] sender", "[smtp] sender")
        return dict(
            row=row,
            content=content,
            attempts=attempts,
            attachments=files,
            refused=refused,
            sender_setting=sender,
            recipients=self.recipients(row, content),
        )

    def recipients(self, row: Row, content: dict[str, Any]) -> list[tuple[str, str, str | None]]:
        """[(address, outcome, reply)] for each envelope recipient: refused
        (for good), deferred (tried again at next_attempt_on, only they),
        accepted, or waiting (not accepted by the server yet)."""
        refused = json.loads(row.refused) if row.refused else {}
        deferred = json.loads(row.deferred_rcpts) if row.deferred_rcpts else {}
        listed = [a for key in ("to", "cc", "bcc") for a in content.get(key) or ()]
        addresses = [bare(a) for a in listed if isinstance(a, str)] or (
            [row.address] if row.address else []
        )
        addresses += [a for a in list(refused) + list(deferred) if a not in addresses]
        out: list[tuple[str, str, str | None]] = []
        for address in addresses:
            if address in refused:
                out.append((address, "refused", scrub(refused[address], self.settings)))
            elif address in deferred:
                out.append((address, "deferred", scrub(deferred[address], self.settings)))
            elif row.sent_on is not None:
                out.append((address, "accepted", None))
            else:
                out.append((address, "waiting", None))
        return out

    # ------------------------------------------------------------- actions
    def retry(
        self,
        ids: Iterable[object] | None = None,
        status: str | None = None,
        now: datetime.datetime | None = None,
        who: str | None = None,
    ) -> int:
        """Queue failed or held messages for delivery now; return how many.

        ``ids``: those messages (others are skipped); ``status``: every
        message with that status (failed or held). Attempts start again from
        zero and an expiry is lifted, since the admin asked for delivery. A
        hold's probe wait is cut short so the next pass really tries.
        """
        query = self._select(ids, status, RETRYABLE)
        if query is None:
            return 0
        n = self.store.retry(query, now or utcnow())
        logger.info("%s: %d message(s) queued for retry", who or "admin", n)
        return n

    def pause(self, who: str | None) -> bool:
        """Pause delivery for every worker (see MailS3.pause); False if it
        was paused already."""
        return self.mail.pause(who or "admin")

    def resume(self, who: str | None) -> bool:
        """Let delivery go on; False if it was not paused."""
        return self.mail.resume(who or "admin")

    def cancel(
        self,
        ids: Iterable[object] | None = None,
        status: str | None = None,
        who: str | None = None,
    ) -> int:
        """Cancel queued, held or failed messages (never one being sent)."""
        query = self._select(ids, status, CANCELLABLE)
        if query is None:
            return 0
        n = self.store.cancel(query)
        logger.info("%s: %d message(s) cancelled", who or "admin", n)
        return n

    def _select(
        self, ids: Iterable[object] | None, status: str | None, allowed: tuple[Status, ...]
    ) -> Query | None:
        o = self.outbox
        if status is not None:
            if status not in allowed:
                raise ValueError("status must be one of %s" % ", ".join(allowed))
            return o.status == status
        numbers = sorted({whole_number(i, "a message number", 1) for i in ids or ()})
        if not numbers:
            return None
        return o.id.belongs(numbers) & o.status.belongs(allowed)

    def purge(
        self,
        days: object,
        now: datetime.datetime | None = None,
        chunk: int = 500,
        who: str | None = None,
    ) -> tuple[int, ...]:
        """Delete sent messages older than ``days`` days (by sent_on), with their
        attempts and attachments; commits every ``chunk`` messages.

        Returns (messages, attempts, attachments) deleted.
        """
        number = whole_number(days, "days", 0, MAX_DAYS)
        return self.store.purge_sent(number, now or utcnow(), chunk, who or "admin")

    def test_mail(self, to: str, site: str = "the outbox") -> tuple[bool, str]:
        """Send a test message now with the current settings.

        Returns (ok, text): what the server answered, in words, with the
        server named and the password masked.
        """
        mail, s = self.mail, self.settings
        ok = mail.send_direct_email(
            to=to,
            subject="Test mail from %s" % site,
            message="This is a test message sent from %s at %s UTC with the "
            "settings in %s." % (site, utcnow(), config_file(s)),
        )
        host, port = Snapshot(s).host_port
        where = "%s:%s" % (host, port) if host else "(no server)"
        if ok:
            text = "The server %s accepted the test mail to %s: %s" % (where, to, mail.reply)
            if mail.result:
                text += " It refused: %s" % "; ".join(
                    "%s: %s" % item for item in sorted(mail.result.items())
                )
        else:
            text = "The test mail to %s was not sent. Server %s: %s" % (to, where, mail.error)
        return ok, scrub(text, s)

    # --------------------------------------------------------------- chart
    def activity(
        self, hours: float = 24, bucket: int = 3600, now: datetime.datetime | None = None
    ) -> Activity:
        """Delivery attempts per time bucket over the last ``hours``, by
        outcome: a list of (bucket start, dict(sent=, retry=, held=,
        failed=)), oldest first. ``retry``: deferred by the server, tried
        again later; ``held``: stopped by the settings or an unreachable
        server. Attempts, not messages: one message may count in several.
        """
        now = now or utcnow()
        buckets = int(hours * 3600 // bucket)
        end = (
            now.replace(minute=0, second=0) + datetime.timedelta(hours=1)
            if bucket % 3600 == 0
            else now
        )
        start = end - datetime.timedelta(seconds=buckets * bucket)
        series: list[dict[str, int]] = [
            dict((key, 0) for key, _, _ in COLOURS) for _ in range(buckets)
        ]
        for slot_no, outcome, count in self.store.attempts_by_slot(start, end, bucket):
            slot = int(slot_no)
            if outcome in series[0] and 0 <= slot < buckets:
                series[slot][outcome] += int(count)
        return [
            (start + datetime.timedelta(seconds=i * bucket), series[i]) for i in range(buckets)
        ]
