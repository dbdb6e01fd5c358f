"""The bounce reader: delivery reports from the ``bounce_mailbox`` onto the
outbox, and what the admin sees of them.

A pass reads each message of the mailbox (its first READ_LIMIT bytes) and
matches it to an outbox message: by the TOKEN of the address it was sent to
(returnpath.py; a TOKEN whose MAC does not hold matches nothing, whatever
else the report says), or else by the Message-ID the outbox gave the mail,
for one of that message's own recipients. A match records each failure once
(table ``<name>_bounce``, unique on a digest, so a report read twice counts
once) and an attempt with the remote status and diagnostic; a permanent
failure (5.x.x) of every recipient marks a sent message ``bounced``; a delay
(4.x.x) is recorded only. Matched mail is deleted from the mailbox after the
database has it. Mail not understood stays, and its reference is remembered
so later passes do not read it again. Nothing a message contains can stop
the pass; a lost connection ends it, and the next pass goes on.

The delivery task calls ``when_due()`` after each delivery pass: it reads
the mailbox every ``bounce_interval`` seconds, one worker at a time.
"""

import datetime
import hashlib
import json
import logging
import ssl
import time
from typing import Any

from pydal import Field

from ..delivery import returnpath
from ..delivery.check import Mailer, scrub
from ..delivery.message import bare, loads
from ..delivery.pydal_internals import driver_cursor, uri_hash
from ..delivery.settings import Storage, read_value
from ..delivery.store import DAL, Logged, OutboxStore, Row, Status, Table, utcnow
from . import dsn, mailboxes

logger = logging.getLogger("s3outbox")

MAX_PER_PASS = 2000  # messages looked at in one pass
MAX_SKIPPED = 5000  # references of mail not understood, remembered (newest)
MAX_SKIPPED_TEXT = 60000  # characters those references may take in the state row
SUSPECT_TIMES = 3  # passes broken at the same message before it is skipped
KINDS = (Logged.BOUNCED, Logged.DELAYED)
_next_look: dict[tuple[str, str], float] = {}  # (database, table) -> monotonic time to look again
# A pass's counts: read, matched, bounced, delayed, skipped, marked (int) and
# error (the text of what stopped it, or None).
Counts = dict[str, Any]


# ------------------------------------------------------------------ table
def define_table(store: OutboxStore, migrate: bool = True) -> Table:
    """``<name>_bounce``: one row per failure a report stated, once."""
    name = store.tablename + "_bounce"
    if name not in store.db.tables:
        store.db.define_table(
            name,
            Field("outbox_id", "integer", notnull=True),
            Field("recipient", length=255),
            Field("kind", length=16),
            Field("status", length=16),
            Field("code", "integer"),
            Field("diagnostic", "text"),
            Field("received_on", "datetime"),
            Field("digest", length=64, notnull=True, unique=True),
            migrate=migrate,
        )
        if migrate and store.engine == "mysql":
            _utf8mb4(store.db, name)
    return store.db[name]


def _utf8mb4(db: DAL, name: str) -> None:
    """A report's text may hold any character: MariaDB tables are made utf8
    (3 bytes) by pydal; convert this one, once (as the store does its own)."""
    if db.executesql(
        "SELECT 1 FROM information_schema.tables WHERE table_schema="
        "DATABASE() AND table_name=%s AND LEFT(table_collation, 7) "
        "<> 'utf8mb4'",
        placeholders=[name],
    ):
        db.executesql(
            "ALTER TABLE %s CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % name
        )


# ------------------------------------------------------------ scheduling
def when_due(mail: Mailer, now: datetime.datetime | None = None) -> Counts | None:
    """Read the bounce mailbox if it is this worker's turn; never raises."""
    s = mail.settings
    if not s.bounce_mailbox:
        return None
    where = (uri_hash(mail.db), mail.store.tablename)
    if time.monotonic() < _next_look.get(where, 0):
        return None
    _next_look[where] = time.monotonic() + min(60, s.bounce_interval)
    try:
        now = now or utcnow()
        old = mail.store.get_state("bounce_turn")
        if old and old.get("next", "") > str(now):
            return None
        new = dict(next=str(now + datetime.timedelta(seconds=s.bounce_interval)))
        if not mail.store.take_turn("bounce_turn", old, new, now):
            return None
        return read_bounces(mail)
    except Exception:  # reading bounces never stops the delivery pass that calls it
        mail.store.rollback()
        logger.exception("bounces: the reader pass failed")
        return None


# ---------------------------------------------------------------- reading
def read_bounces(mail: Mailer) -> Counts:
    """One pass over the bounce mailbox; its counts. Never raises for what
    the mailbox holds; MailboxError is logged (password masked)."""
    return Reader(mail).run()


class Reader:
    """One pass of the bounce reader."""

    def __init__(self, mail: Mailer) -> None:
        self.mail, self.store, self.settings = mail, mail.store, mail.settings
        self.table = define_table(self.store)
        self.address = returnpath.usable(self.settings.bounce_address)
        self.tokens = returnpath.token_pattern(self.address) if self.address else None
        self.counts: Counts = dict(
            read=0, matched=0, bounced=0, delayed=0, skipped=0, marked=0, error=None
        )
        self.state_name = (
            "bounce_skipped:"
            + hashlib.sha256(
                mailboxes.label(self.settings.bounce_mailbox).encode("utf-8")
            ).hexdigest()[:16]
        )

    def run(self) -> Counts:
        url = self.settings.bounce_mailbox
        try:
            box = mailboxes.open_mailbox(
                url,
                self.settings.timeout or 30,
                self.settings.ssl_context or _context(self.settings),
            )
        except (mailboxes.MailboxError, ValueError) as e:
            return self._failed(e)
        memory = self.store.get_state(self.state_name) or {}
        memory = dict(refs=memory.get("refs") or [], suspect=memory.get("suspect"))
        skipped, now = set(memory["refs"]), dict(memory)
        try:
            self._messages(box, skipped, now)
        except mailboxes.Broken as e:
            self._failed(e)
        except Exception as e:  # the database: the mail stays for the next pass
            self.store.rollback()
            logger.exception("bounces: recording a report failed")
            self.counts["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            box.close()
            self._remember(skipped, memory, now)
        if self.counts["matched"] or self.counts["skipped"]:
            logger.info(
                "bounces: %(read)d read, %(matched)d matched (%(bounced)d "
                "bounced, %(delayed)d delayed), %(skipped)d left in the "
                "mailbox" % self.counts
            )
        return self.counts

    def _messages(
        self, box: mailboxes.Imap | mailboxes.Pop, skipped: set[str], memory: dict[str, Any]
    ) -> None:
        """Handle each message not yet skipped; Broken ends the pass (see
        ``_suspect``)."""
        listing = box.messages()
        skipped.intersection_update(ref for ref, _ in listing)  # gone meanwhile
        for ref, size in listing[:MAX_PER_PASS]:
            if ref in skipped:
                continue
            try:
                data = box.head(ref, size)
            except mailboxes.Broken as e:
                self._suspect(ref, e, skipped, memory)
                raise
            if (memory["suspect"] or [None])[0] == ref:
                memory["suspect"] = None
            self.counts["read"] += 1
            why = self._handled(data)
            if why is None:
                box.delete(ref)
                self.counts["matched"] += 1
            else:
                skipped.add(ref)
                self.counts["skipped"] += 1
                logger.info("bounces: left in the mailbox (%s, %d bytes): %s", ref, size, why)

    @staticmethod
    def _suspect(ref: str, e: mailboxes.Broken, skipped: set[str], memory: dict[str, Any]) -> None:
        """Reading ``ref`` broke the connection: skip it at once if it cannot
        be read over this protocol, or after SUSPECT_TIMES passes in a row,
        so one message cannot stop every later pass."""
        ref_before, times = memory.get("suspect") or (None, 0)
        times = times + 1 if ref_before == ref else 1
        if isinstance(e, mailboxes.Unreadable) or times >= SUSPECT_TIMES:
            skipped.add(ref)
            logger.info("bounces: left in the mailbox (%s): reading it breaks the connection", ref)
        memory["suspect"] = [ref, times]

    def _failed(self, e: Exception) -> Counts:
        text = scrub(e, self.settings)
        logger.warning(
            "bounces: cannot read %s: %s", mailboxes.label(self.settings.bounce_mailbox), text
        )
        self.counts["error"] = text
        return self.counts

    def _remember(self, skipped: set[str], before: dict[str, Any], now: dict[str, Any]) -> None:
        """Store the references of mail not understood (the newest
        MAX_SKIPPED) and the message that broke the last pass, if changed."""
        refs = sorted(skipped, key=_ref_order)[-MAX_SKIPPED:]
        while len(json.dumps(refs)) > MAX_SKIPPED_TEXT:  # MariaDB's TEXT: 64 KiB
            refs = refs[len(refs) // 10 + 1 :]
        doc = dict(refs=refs, suspect=now["suspect"])
        if doc != before:
            try:
                with self.store.transaction():
                    self.store.set_state(self.state_name, doc)
            except Exception:  # the driver's own error class; the next pass reads them again
                logger.exception("bounces: could not remember the mail left unread")

    # ------------------------------------------------------------ matching
    def _handled(self, data: bytes) -> str | None:
        """``handle(data)``; if it fails while the database answers, the
        message was the cause: it is left (why), the pass goes on. If the
        database does not answer, the failure ends the pass."""
        try:
            return self.handle(data)
        except Exception as e:
            self.store.rollback()
            self.store.get_state("bounce_turn")  # raises if the database is down
            logger.warning("bounces: a report could not be recorded", exc_info=True)
            return "recording it failed: %s" % type(e).__name__

    def handle(self, data: bytes) -> str | None:
        """Record the report in ``data``: None if it matched, else why not."""
        report = dsn.read(data, self.tokens)
        if report is None:
            return "not a delivery report"
        found = self.match(report)
        if isinstance(found, str):
            return found
        row, failures = found
        with self.store.transaction():
            self.record(row, failures)
        return None

    def match(self, report: dsn.Report) -> tuple[Row, list[dsn.Failure]] | str:
        """(outbox row, its failures) for ``report``, or why it matches nothing."""
        o = self.store.outbox
        fields = (o.id, o.message_id, o.status, o.address, o.body, o.refused)
        if report.tokens:
            secret = returnpath.key(self.store)
            for row_id, mac in report.tokens:
                row = (
                    self.store.db(o.id == row_id).select(*fields).first()
                    if row_id < 2**31
                    else None
                )  # ids are 32-bit integers
                if row and returnpath.verify(secret, row_id, row.message_id, mac):
                    return self._ours(row, report.failures, True)
            return "its TOKEN does not name a message of this outbox"
        ids = [i for i in report.message_ids if len(i) <= 255][:20]
        rows = self.store.db(o.message_id.belongs(ids)).select(*fields) if ids else None
        if not rows:
            return "it names no message of this outbox"
        return self._ours(rows.first(), report.failures, False)

    def _ours(
        self, row: Row, failures: list[dsn.Failure], by_token: bool
    ) -> tuple[Row, list[dsn.Failure]] | str:
        """The failures of ``failures`` that are about ``row``'s recipients."""
        rcpts = recipients(row)
        kept = []
        for f in failures:
            if f.recipient == self.address or (
                self.tokens and self.tokens.search(f.recipient or "")
            ):
                continue  # a report on mail to the bounce address: a loop
            single = len(rcpts) == 1 and (by_token or not f.recipient)
            if f.recipient in rcpts or single:
                kept.append(f)
        if not kept:
            return "its failures are not for recipients of message %d" % row.id
        return row, kept

    # ----------------------------------------------------------- recording
    def record(self, row: Row, failures: list[dsn.Failure]) -> None:
        """Each failure once, with an attempt; ``bounced`` when every
        recipient failed for good. The caller's transaction commits."""
        now, store = utcnow(), self.store
        worker = "bounce reader"
        for f in failures:
            kind = Logged.BOUNCED if f.permanent else Logged.DELAYED
            digest = hashlib.sha256(
                json.dumps([row.id, f.recipient, f.status, f.diagnostic]).encode("utf-8")
            ).hexdigest()
            if not self._insert(row.id, f, kind, now, digest):
                continue  # read before (a copy, or a pass that broke off)
            error = "%s %s: %s" % (f.status, f.recipient or "(recipient not named)", f.diagnostic)
            store.attempt.insert(
                outbox_id=row.id,
                attempted_on=now,
                worker=worker,
                outcome=kind,
                code=f.code,
                error=error,
            )
            self.counts[kind] += 1
        self._mark(row)

    def _insert(
        self,
        outbox_id: int,
        f: dsn.Failure,
        kind: Logged,
        now: datetime.datetime,
        digest: str,
    ) -> bool:
        """Insert-or-nothing on the digest: True when this row is new."""
        into = (
            "%s (outbox_id, recipient, kind, status, code, diagnostic, received_on, "
            "digest) VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s)" % str(self.table)
        )
        # PostgreSQL's dialect names the state table's key; any key here.
        sql = (
            "INSERT INTO %s ON CONFLICT DO NOTHING" % into
            if self.store.engine == "postgres"
            else self.store._insert_ignore_sql(into)
        )
        self.store._sql(
            sql, [outbox_id, f.recipient[:255], kind, f.status, f.code, f.diagnostic, now, digest]
        )
        return driver_cursor(self.store.db).rowcount == 1

    def _mark(self, row: Row) -> None:
        """Mark a sent message ``bounced`` once all its recipients failed for
        good (here, or refused when it was sent)."""
        b = self.table
        gone = {
            r.recipient
            for r in self.store.db((b.outbox_id == row.id) & (b.kind == Logged.BOUNCED)).select(
                b.recipient
            )
        }
        if not gone:
            return
        rcpts = recipients(row)
        refused = set(a.lower() for a in json.loads(row.refused or "{}"))
        if len(rcpts) > 1 and not rcpts <= (gone | refused):
            return
        mine = (b.outbox_id == row.id) & (b.kind == Logged.BOUNCED)
        last = (
            self.store.db(mine)
            .select(b.status, b.recipient, b.diagnostic, b.code, orderby=~b.id, limitby=(0, 1))
            .first()
        )
        o = self.store.outbox
        self.counts["marked"] += self.store.db(
            (o.id == row.id) & (o.status == Status.SENT)
        ).update(
            status=Status.BOUNCED,
            last_code=last.code,
            last_error="bounced: %s %s: %s" % (last.status, last.recipient, last.diagnostic),
        )


def recipients(row: Row) -> set[str]:
    """The lower-case addresses ``row`` was sent to."""
    content = loads(row.body) or {}
    found: set[str] = set()
    for key in ("to", "cc", "bcc"):
        for value in content.get(key) or ():
            found.add(bare(value).lower())
    if row.address and not found:
        found.add(row.address.lower())
    return found


def _ref_order(ref: str) -> tuple[str, int]:
    """Sort references oldest first: IMAP's by UID, POP3's as text."""
    validity, _, uid = ref.rpartition(":")
    return (validity, int(uid)) if uid.isdigit() else (ref, 0)


def _context(settings: Storage) -> ssl.SSLContext | None:
    """None (certificates verified), or a context that skips the check when
    ``self_signed_certificate`` is set, as for the SMTP relay."""
    if not read_value(settings, "self_signed_certificate")[0]:
        return None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# ------------------------------------------------------------ admin reads
def page(
    mail: Mailer,
    address: str | None = None,
    kind: str | None = None,
    before: int | None = None,
    size: int = 50,
) -> tuple[list[dict[str, Any]], int | None]:
    """(rows, older): reported failures newest first, each a dict with the
    message's subject, status and pe_id; ``address`` matches part of the
    recipient, ``kind`` is bounced or delayed; ``older`` is the id to pass
    as ``before`` for the next page, or None."""
    b, o = define_table(mail.store), mail.store.outbox
    query = b.outbox_id == o.id
    if address:
        query &= b.recipient.contains(address.strip().lower())
    if kind:
        query &= b.kind == kind
    if before:
        query &= b.id < before
    found = mail.db(query).select(
        b.id,
        b.outbox_id,
        b.recipient,
        b.kind,
        b.status,
        b.code,
        b.diagnostic,
        b.received_on,
        o.subject,
        o.status,
        o.pe_id,
        orderby=~b.id,
        limitby=(0, size + 1),
    )
    rows = [
        dict(
            id=r[b.id],
            outbox_id=r[b.outbox_id],
            recipient=r[b.recipient],
            kind=r[b.kind],
            status=r[b.status],
            code=r[b.code],
            diagnostic=r[b.diagnostic],
            received_on=r[b.received_on],
            subject=r[o.subject],
            message_status=r[o.status],
            pe_id=r[o.pe_id],
        )
        for r in found
    ]
    older = rows[size - 1]["id"] if len(rows) > size else None
    return rows[:size], older


def count(mail: Mailer, kind: str = Logged.BOUNCED) -> int:
    """Reported failures of ``kind`` (one per recipient and report)."""
    b = define_table(mail.store)
    return mail.db(b.kind == kind).count()
