"""The message store: the outbox tables and every statement that changes them.

This base class holds what every database runs alike; dialects.py holds one
subclass per database (SQLite, PostgreSQL, MariaDB/MySQL) for the rest, and
``open_store()`` there picks it. Claiming is the one place where workers
compete. A claim marks a batch of due rows ``sending`` with a lease (owner
and end time) in one short transaction; each dialect says how it does that
safely. Results are written only where the lease is still ours, so a worker
that outlived its lease cannot overwrite the work of the one that took over.

Transactions: the store's methods that change rows are units of work and
commit (``transaction()``, the one place that commits or rolls back outbox
work), except those whose docstring says the caller's transaction commits
(``enqueue()``, ``enqueue_many()``, ``drop()``, ``set_state()``, ``claim_name()``,
``insert_or_nothing()``, ``hurry_probes()``, ``take_unit()``): their rows
belong to the caller's work, and send() must not commit for its caller.
An upper part's tables (the account flows') are defined with the store
through ``add_tables()``; the statements on them are that part's.
All times are naive UTC datetimes, to the second.
"""

import contextlib
import datetime
import decimal
import enum
import itertools
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, Literal, NamedTuple, overload

from pydal import Field

from . import holds
from .message import Attachment, Message, loads
from .pydal_internals import driver_cursor, execute, forget_connection, uri_hash

# pydal's rows, tables and databases: pydal has no type information.
Row = Any
DAL = Any
Query = Any
Table = Any

logger = logging.getLogger("s3outbox")
_savepoints = itertools.count()


class Status(enum.StrEnum):
    """A message's ``status`` column."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    HELD = "held"
    CANCELLED = "cancelled"
    BOUNCED = "bounced"  # sent, then reported undeliverable (bounces.py)


STATUSES = tuple(Status)


class Logged(enum.StrEnum):
    """An attempt's ``outcome`` column in the attempt log."""

    SENT = "sent"
    RETRY = "retry"
    HELD = "held"
    FAILED = "failed"
    BOUNCED = "bounced"  # a delivery status report: permanent failure
    DELAYED = "delayed"  # a delivery status report: still trying


# Lower goes first: a claim orders due mail by priority (account mail is high).
PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW = 1, 5, 9

PAUSE = "paused"  # the state row of an admin's pause of delivery: {by, since} or empty


def utcnow() -> datetime.datetime:
    """Now as the outbox stores times: a naive UTC datetime, to the second."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)


# The columns send() writes, in the order of store.enqueue()'s values.
_ENQUEUED = (
    "message_id",
    "pe_id",
    "address",
    "contact_method",
    "status",
    "priority",
    "attempts",
    "next_attempt_on",
    "expires_on",
    "created_on",
    "sender",
    "subject",
    "body",
    "attachment_count",
    "byte_size",
)

# (database URI, table name) whose charset and indexes this process checked.
_SCHEMA_DONE: set[tuple[str, str]] = set()
# Upper parts' tables: part name -> define(store, migrate) (settings.register).
_PART_TABLES: dict[str, Callable[["OutboxStore", bool], None]] = {}


def add_tables(name: str, define: Callable[["OutboxStore", bool], None]) -> None:
    """Have every store from now on call ``define(store, migrate)`` to define
    part ``name``'s tables beside its own; idempotent, one entry a part."""
    _PART_TABLES[name] = define


def savepoint_name() -> str:
    """A savepoint name not in use in this process."""
    return "s3outbox_sp%d" % next(_savepoints)


class OutboxStore:
    """The outbox tables on ``db``, named from ``tablename`` (default msg_outbox).

    Not used directly: ``dialects.open_store()`` makes the subclass for the
    database, which sets ``engine`` and ``mark`` (the driver's placeholder).
    """

    engine: str | None = None
    mark = "%s"
    # True where a failed statement is undone alone and the transaction goes
    # on (SQLite, InnoDB); PostgreSQL aborts the whole transaction.
    atomic_statements = False

    def __init__(self, db: DAL, tablename: str = "msg_outbox", migrate: bool = True) -> None:
        self.db = db
        self.tablename = tablename
        self._define(migrate)
        self._insert_sql = "INSERT INTO %s (%s) VALUES (%s)" % (
            tablename,
            ", ".join(_ENQUEUED),
            ", ".join([self.mark] * len(_ENQUEUED)),
        )

    # ---------------------------------------------------------- transactions
    @contextlib.contextmanager
    def transaction(self, fresh: bool = False) -> Iterator[None]:
        """A unit of work: committed at the end, rolled back if it fails.

        ``fresh`` first ends the read transaction left open, so that what it
        reads is current (MariaDB's REPEATABLE READ would show an older
        snapshot, missing other workers' work).
        """
        if fresh:
            self.db.commit()
        try:
            yield
        except BaseException:
            self.rollback()
            raise
        self.db.commit()

    def rollback(self) -> None:
        """Undo the open transaction; if the connection is gone (the database
        restarted), drop it so that the next unit of work opens a new one."""
        try:
            self.db.rollback()
        except Exception:
            logger.warning("rollback failed; dropping the database connection", exc_info=True)
            try:
                self.db.recycle_connection_in_pool_or_close("rollback")
            except Exception:  # the driver's own error class, whatever the driver
                logger.info("closing it failed too; the connection is forgotten", exc_info=True)
                forget_connection(self.db)

    # ---------------------------------------------------------------- tables
    def _define(self, migrate: bool) -> None:
        db, name = self.db, self.tablename
        for table, fields in (
            (name, _outbox_fields),
            (name + "_attachment", _attachment_fields),
            (name + "_blob", _blob_fields),
            (name + "_attempt", _attempt_fields),
            (name + "_state", _state_fields),
        ):
            if table not in db.tables:
                db.define_table(table, *fields(), migrate=migrate)
        self.outbox = db[name]
        self.attachment = db[name + "_attachment"]
        self.blob = db[name + "_blob"]
        self.attempt = db[name + "_attempt"]
        self.state = db[name + "_state"]
        for part in sorted(_PART_TABLES):
            _PART_TABLES[part](self, migrate)
        key = (uri_hash(db), name)
        if migrate and key not in _SCHEMA_DONE:
            # Once a process: web2py runs the models on every request.
            self._schema()
            _SCHEMA_DONE.add(key)

    def _schema(self) -> None:
        """What the tables need beyond pydal's CREATE TABLE, once a process."""
        self._indexes()

    def _indexes(self) -> None:
        """Create the indexes once; then a state row says they are there.

        MailS3 is built on every request. CREATE INDEX, even IF NOT EXISTS,
        takes a table lock on PostgreSQL that waits for every open transaction
        that queued mail, and queues all later writers behind it.
        """
        wanted = _indexes(self.tablename)
        names = [index for index, _, _ in wanted]
        if self.get_state("indexes") == names:
            return
        with self.transaction():
            for index, table, columns in wanted:
                self.db.executesql(
                    "CREATE INDEX IF NOT EXISTS %s ON %s (%s)" % (index, table, columns)
                )
            now = utcnow()
            self._ensure_state("indexes", now)
            self.set_state("indexes", names, now=now)

    def _sql(self, sql: str, args: Sequence[object] = (), rows: bool = False) -> Any:
        """Run ``sql`` with %s placeholders written the driver's way."""
        if self.mark != "%s":
            sql = sql.replace("%s", self.mark)
        return (
            self.db.executesql(sql, placeholders=list(args))
            if rows
            else execute(self.db, sql, list(args))
        )

    # --------------------------------------------------------------- enqueue
    def enqueue(
        self,
        msg: Message,
        message_id: str,
        pe_id: int | None = None,
        sender: str | None = None,
        priority: int = 5,
        not_before: datetime.datetime | None = None,
        expires_on: datetime.datetime | None = None,
    ) -> int:
        """Insert one message (and its attachments); the caller commits.

        The inserts run inside a savepoint: if one fails, nothing of this
        message is kept and the caller's transaction stays usable (PostgreSQL
        refuses every later statement of a transaction in which one failed).
        A lone INSERT needs none where a failed statement undoes only itself
        (``atomic_statements``); the savepoint was a third of send()'s work.
        """
        values = _values(msg, message_id, pe_id, sender, priority, not_before, expires_on)
        if not msg.attachments:
            return self._insert_alone(values)
        with self.savepoint():
            return self._insert_with_parts(msg, values)

    def enqueue_many(
        self,
        msg: Message,
        recipients: Sequence[tuple[str, int]],
        sender: str | None = None,
        priority: int = 5,
        not_before: datetime.datetime | None = None,
        expires_on: datetime.datetime | None = None,
    ) -> list[int]:
        """Insert ``msg`` once for each (message_id, pe_id) of ``recipients``,
        all or none; the ids in that order. The caller commits.

        One savepoint for them all: on PostgreSQL one a row would overflow
        the transaction's cache of 64 subtransactions for a large list.
        Each attachment's bytes are stored once (a ``_blob`` row), not once
        a recipient: a 1 MB file to 5,000 people was 5 GB of outbox.
        """
        with self.savepoint():
            blobs = self._share(msg) if len(recipients) > 1 else None
            return [
                self._insert_with_parts(
                    msg,
                    _values(msg, message_id, pe_id, sender, priority, not_before, expires_on),
                    blobs,
                )
                for message_id, pe_id in recipients
            ]

    def _share(self, msg: Message) -> list[int]:
        """The ids of new ``_blob`` rows holding the attachments' bytes."""
        return [self.blob.insert(payload=part["payload"]) for part in msg.attachments]

    def _insert_with_parts(
        self, msg: Message, values: tuple[object, ...], blobs: list[int] | None = None
    ) -> int:
        """Insert one message and its attachment rows: with their bytes, or
        pointing at the shared ``blobs``."""
        row_id = self._insert_row(values)
        for position, part in enumerate(msg.attachments):
            row: dict[str, object] = dict(part, outbox_id=row_id, seq=position)
            if blobs:
                row.update(payload=None, blob_id=blobs[position])
            self.attachment.insert(**row)
        return row_id

    def fail_unsent(self, ids: Sequence[int], reason: str, attachments: int) -> None:
        """Fail messages queued in the caller's transaction before any
        delivery, for ``reason``; ``attachments`` they should carry, not
        stored, so that a retry fails too rather than send without them.
        The caller commits."""
        self.db(self.outbox.id.belongs(ids)).update(
            status=Status.FAILED, last_error=reason, attachment_count=attachments
        )

    def drop(self, ids: Sequence[int]) -> None:
        """Delete messages queued in the caller's transaction that must not
        go out after all, with their attachments; the caller commits."""
        if ids:
            self._delete_attachments(ids)
            self.db(self.outbox.id.belongs(ids)).delete()

    def _delete_attachments(self, ids: Sequence[int]) -> int:
        """Delete the attachment rows of messages ``ids``, and the shared
        bytes no other message points at any more; how many rows."""
        a, b = self.attachment, self.blob
        mine = a.outbox_id.belongs(ids)
        shared = {r.blob_id for r in self.db(mine & (a.blob_id != None)).select(a.blob_id)}  # noqa: E711
        n = self.db(mine).delete()
        if shared:
            used = {
                r.blob_id
                for r in self.db(a.blob_id.belongs(shared)).select(a.blob_id, distinct=True)
            }
            if shared - used:
                self.db(b.id.belongs(shared - used)).delete()
        return n

    @contextlib.contextmanager
    def savepoint(self, keep: bool = True) -> Iterator[None]:
        """Run the block in a savepoint of the caller's transaction: rolled
        back if it raises, or always when ``keep`` is False."""
        db = self.db
        name = savepoint_name()
        self._begin_if_idle()
        db.executesql("SAVEPOINT %s" % name)
        try:
            yield
        except BaseException:
            self._back_to(name)
            raise
        if not keep:
            db.executesql("ROLLBACK TO SAVEPOINT %s" % name)
        db.executesql("RELEASE SAVEPOINT %s" % name)

    def _back_to(self, name: str) -> None:
        """After a failure: undo the work since savepoint ``name`` and drop
        it; the failure, raised on, is the error to report."""
        try:
            self.db.executesql("ROLLBACK TO SAVEPOINT %s" % name)
            self.db.executesql("RELEASE SAVEPOINT %s" % name)
        except Exception:  # the driver's own error class, whatever the driver
            logger.info("rolling back to savepoint %s failed too", name, exc_info=True)

    def _begin_if_idle(self) -> None:
        """Start a transaction where a savepoint would not (see SQLite's)."""

    def _insert_alone(self, values: tuple[object, ...]) -> int:
        """INSERT a message without attachments, undone alone if it fails."""
        if self.atomic_statements:
            return self._insert_row(values)
        with self.savepoint():
            return self._insert_row(values)

    def _insert_row(self, values: tuple[object, ...]) -> int:
        """INSERT the ``_ENQUEUED`` values, returning the new id."""
        cursor = self._cursor()
        cursor.execute(self._insert_sql, values)
        return cursor.lastrowid

    def _cursor(self) -> Any:
        """The driver's cursor, for the INSERT of send(): pydal's execute()
        makes its logging handlers anew for each statement, a sixth of
        send()'s own time (the INSERT is then missing from web2py's list of
        a request's queries, db._timings)."""
        return driver_cursor(self.db)

    @staticmethod
    def content(row: Row) -> Any:
        """The stored message as a dict, for display (lenient with odd rows)."""
        return loads(row.body)

    @staticmethod
    def message(row: Row) -> Message:
        """The stored Message (attachments not loaded); ValueError or KeyError
        for a row that does not hold one."""
        return Message.from_json(row.body)

    def attachments(self, outbox_id: int) -> tuple[Attachment, ...]:
        """The attachments of message ``outbox_id``, their bytes its own or shared."""
        a, b = self.attachment, self.blob
        rows = self.db(a.outbox_id == outbox_id).select(
            a.kind,
            a.filename,
            a.content_type,
            a.content_id,
            a.payload,
            a.blob_id,
            b.payload,
            left=b.on(b.id == a.blob_id),
            orderby=a.seq,
            cacheable=True,
        )
        return tuple(
            Attachment(
                kind=r[a.kind],
                filename=r[a.filename],
                content_type=r[a.content_type],
                content_id=r[a.content_id],
                payload=_bytes(r[b.payload] if r[a.blob_id] else r[a.payload]),
            )
            for r in rows
        )

    # ----------------------------------------------------------------- claim
    def requeue_expired(self, now: datetime.datetime, max_attempts: int) -> int:
        """Give rows whose worker died (lease ran out) back to the queue; commits.

        A lost lease counts as an attempt, so a message that kills every
        worker that sends it (say, out of memory) fails after
        ``max_attempts`` instead of taking a batch down for ever.
        """
        t = self.outbox
        stale = (t.status == Status.SENDING) & (t.lease_until < now)
        if not self.db(stale).select(t.id, limitby=(0, 1)):
            return 0
        why = "the worker sending it stopped before recording the result (its lease ran out)"
        with self.transaction():
            self.db(stale & (t.attempts + 1 >= max_attempts)).update(
                status=Status.FAILED,
                attempts=t.attempts + 1,
                lease_owner=None,
                lease_until=None,
                last_error="gave up after %d attempts: %s" % (max_attempts, why),
            )
            return self.db(stale).update(
                status=Status.QUEUED,
                next_attempt_on=now,
                lease_until=None,
                attempts=t.attempts + 1,
                last_error=why + "; queued again",
            )

    def claim(
        self,
        owner: str,
        limit: int,
        lease: float,
        now: datetime.datetime,
        rate: tuple[int, float] | None = None,
    ) -> list["Claimed"]:
        """Mark up to ``limit`` due rows as ours and return them; commits.

        ``rate`` is (max messages, window seconds) across all workers, or None.
        A claim is its own transaction: counting from an older read snapshot
        would miss other workers' work.
        """
        with self.transaction(fresh=True):
            if rate:
                limit = min(limit, self._rate_room(now, *rate))
            if limit > 0:
                self._claim(owner, int(limit), now + datetime.timedelta(seconds=lease), now)
        if limit <= 0:
            return []
        rows = self._sql(
            "SELECT %s FROM %s WHERE lease_owner=%%s ORDER BY priority, "
            "next_attempt_on, id" % (", ".join(Claimed._fields), self.tablename),
            [owner],
            rows=True,
        )
        return [_claimed(r) for r in rows]

    def _pick_sql(self, limit: int) -> str:
        """SELECT of the ids of up to ``limit`` due rows, in send order."""
        return (
            "SELECT id FROM %s WHERE status='%s' AND next_attempt_on<=%%s "
            "ORDER BY priority, next_attempt_on, id LIMIT %d"
            % (self.tablename, Status.QUEUED, limit)
        )

    def _claim_sql(self) -> str:
        return "UPDATE %s SET status='%s', lease_owner=%%s, lease_until=%%s WHERE id IN " % (
            self.tablename,
            Status.SENDING,
        )

    def _claim(
        self, owner: str, limit: int, until: datetime.datetime, now: datetime.datetime
    ) -> None:
        """Mark due rows ``sending`` for ``owner``: the dialect's safe way."""
        raise NotImplementedError

    def _rate_room(self, now: datetime.datetime, count: int, window: float) -> int:
        """How many more messages the rate limit allows now, serialised.

        A first count without a lock spares the write while the limit is used
        up. Then updating the lock row makes concurrent claimers wait for each
        other (a row lock on PostgreSQL and MariaDB, the write lock on SQLite)
        before the count that decides. The lock is the transaction's first
        statement (hence the commit before it), so that MariaDB's read
        snapshot for that count is taken once the lock is ours.
        """
        if self._rate_used(now, window) >= count:
            return 0
        self._ensure_state("rate_lock", now)
        self.db.commit()
        self.db(self.state.name == "rate_lock").update(updated_on=now)
        return count - self._rate_used(now, window)

    def _rate_used(self, now: datetime.datetime, window: float) -> int:
        """Messages sent in the window, or being sent now, by all workers.

        One statement, so one snapshot on PostgreSQL: record() turns
        ``sending`` into a logged attempt between two separate counts.
        An attempt logged at second S went out at most a second earlier
        (times are to the second), hence ``>=``.
        """
        since = now - datetime.timedelta(seconds=window)
        sql = (
            "SELECT (SELECT COUNT(*) FROM %s_attempt WHERE attempted_on>=%%s AND "
            "outcome='%s') + (SELECT COUNT(*) FROM %s WHERE status='%s')"
            % (self.tablename, Logged.SENT, self.tablename, Status.SENDING)
        )
        return int(self._sql(sql, [since], rows=True)[0][0])

    def claim_name(self, name: str, now: datetime.datetime) -> bool:
        """Insert the state row ``name``; True only for the one transaction
        that did (concurrent inserts wait on the unique name, then find it).
        The caller's transaction commits."""
        return self.insert_or_nothing(self.tablename + "_state", dict(name=name, updated_on=now))

    def make_unique(self, table: str, column: str, index: str) -> None:
        """A unique index ``index`` on ``table.column``, after deleting the
        rows that repeat a value (the first row of each value stays); commits."""
        with self.transaction():
            self.db.executesql(
                "DELETE FROM {0} WHERE id NOT IN (SELECT id FROM (SELECT MIN(id) AS "
                "id FROM {0} GROUP BY {1}) AS kept)".format(table, column)
            )
            self.db.executesql(
                "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})".format(index, table, column)
            )

    def insert_or_nothing(self, table: str, values: dict[str, object]) -> bool:
        """INSERT the row ``values`` (a dict) into ``table`` unless a row with
        its unique key exists (a concurrent insert of that key is waited
        for); True if inserted. The caller's transaction commits."""
        names = sorted(values)
        self._sql(
            self._insert_ignore_sql(
                "%s (%s) VALUES (%s)" % (table, ", ".join(names), ", ".join(["%s"] * len(names)))
            ),
            [values[name] for name in names],
        )
        return driver_cursor(self.db).rowcount == 1

    def _ensure_state(self, name: str, now: datetime.datetime) -> None:
        """Create the state row ``name`` unless it exists, even if another
        worker creates it at the same moment (no duplicate-key error)."""
        if not self.db(self.state.name == name).select(self.state.id).first():
            self.claim_name(name, now)

    def _insert_ignore_sql(self, into: str) -> str:
        """INSERT INTO ``into`` that skips a row whose unique key exists."""
        raise NotImplementedError

    # ---------------------------------------------------------------- record
    def record(
        self,
        owner: str,
        now: datetime.datetime,
        worker: str,
        results: Sequence[tuple[int, "Changes", dict[str, object] | None]],
    ) -> None:
        """Write the outcome of each claimed row; one transaction, commits.

        ``results`` holds (row id, changes dict, attempt dict or None).
        Rows whose changes are identical (plain successes) go in one UPDATE.
        """
        o, db = self.outbox, self.db
        free = dict(lease_owner=None, lease_until=None)
        with self.transaction():
            plain_sent = [rid for rid, changes, _ in results if changes is SENT_PLAIN]
            self._mark_sent(plain_sent, owner, now)
            for rid, changes, _ in results:
                if changes is not SENT_PLAIN:
                    changes = dict(changes, **free)
                    db((o.id == rid) & (o.lease_owner == owner)).update(**changes)
            attempts = [
                (rid, now, worker, a["outcome"], a.get("code"), a.get("error"))
                for rid, _, a in results
                if a
            ]
            if attempts:
                self._insert_attempts(attempts)

    def _mark_sent(self, ids: list[int], owner: str, now: datetime.datetime) -> None:
        """The plain successes, in statements of up to 500 ids (below every
        driver's limit on parameters). Not through pydal, which writes each
        id into the SQL text through its representers: a tenth of a worker's
        CPU."""
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            self._sql(
                "UPDATE %s SET status='%s', sent_on=%%s, attempts=attempts+1, "
                "last_error=NULL, last_code=250, lease_owner=NULL, lease_until=NULL "
                "WHERE lease_owner=%%s AND id IN (%s)"
                % (self.tablename, Status.SENT, ",".join(["%s"] * len(chunk))),
                [now, owner] + chunk,
            )

    def _attempt_sql(self) -> tuple[str, str]:
        head = (
            "INSERT INTO %s_attempt (outbox_id, attempted_on, worker, outcome, "
            "code, error) VALUES " % self.tablename
        )
        return head, "(%s)" % ",".join([self.mark] * 6)

    def _insert_attempts(self, values: Sequence[tuple[object, ...]]) -> None:
        """One statement per 100 attempts: psycopg2's executemany runs one
        INSERT, one round trip, per row (SQLite's dialect overrides this)."""
        head, row = self._attempt_sql()
        cursor = driver_cursor(self.db)
        for start in range(0, len(values), 100):
            chunk = values[start : start + 100]
            cursor.execute(
                head + ",".join([row] * len(chunk)), [value for one in chunk for value in one]
            )

    # ---------------------------------------------------------- hold/release
    # The hold and reach of each settings fingerprint and host are state rows
    # whose names, documents and times holds.py owns. Only a worker whose own
    # settings reached the server releases held mail (engine.py decides when).
    def pending(self, now: datetime.datetime) -> tuple[bool, bool]:
        """(mail is due, mail is held): one statement for an idle pass."""
        t = self.tablename
        due, held = self._sql(
            "SELECT (SELECT COUNT(*) FROM (SELECT id FROM %s WHERE status='%s' "
            "AND next_attempt_on<=%%s LIMIT 1) d), (SELECT COUNT(*) FROM (SELECT id "
            "FROM %s WHERE status='%s' LIMIT 1) h)" % (t, Status.QUEUED, t, Status.HELD),
            [now],
            rows=True,
        )[0]
        return bool(due), bool(held)

    def read_holds(self) -> tuple[dict[str, holds.Hold], dict[str, datetime.datetime]]:
        """({key: Hold}, {key: when its settings last reached the server}), one read."""
        s = self.state
        query = s.name.startswith(holds.HELD) | s.name.startswith(holds.REACHED)
        return holds.read_rows(
            (row.name, json.loads(row.doc) if row.doc else None, _datetime(row.updated_on))
            for row in self.db(query).select(s.name, s.doc, s.updated_on)
        )

    def get_hold(self, key: str) -> holds.Hold | None:
        """The hold of the settings ``key``, or None."""
        name = holds.held_name(key)
        doc = self.get_state(name)
        return holds.Hold.read(name, doc) if doc else None

    def put_hold(self, hold: holds.Hold, now: datetime.datetime) -> None:
        """Remember why the settings of ``hold`` cannot deliver; commits."""
        with self.transaction():
            self.set_state(hold.name, hold.doc(), now=now)

    def reword_held(self, reason: str) -> None:
        """Give every held message ``reason`` as its last error (the settings
        changed and now fail for another reason); commits."""
        with self.transaction():
            o = self.outbox
            # SQL's NULL != reason is not true: a row held with no text counts too.
            other = (o.last_error != reason) | (o.last_error == None)  # noqa: E711
            self.db((o.status == Status.HELD) & other).update(last_error=reason)

    def take_probe(self, hold: holds.Hold, later: holds.Hold, now: datetime.datetime) -> bool:
        """Replace ``hold`` by ``later`` unless another worker changed it
        first: True when this worker won the probe turn. Commits."""
        with self.transaction():
            return self.set_state(hold.name, later.doc(), expect=hold.expected(), now=now)

    def mark_reached(self, key: str, now: datetime.datetime, unhold: bool = False) -> None:
        """The settings ``key`` reached the server now (``unhold``: and their
        hold is over); commits."""
        with self.transaction():
            if unhold:
                self.set_state(holds.held_name(key), None, now=now)
            name = holds.reached_name(key)
            self._ensure_state(name, now)
            self.db(self.state.name == name).update(updated_on=now)

    def hurry_probes(self, now: datetime.datetime) -> None:
        """Every hold probes on the next pass (the admin asked for a retry);
        the caller's transaction commits."""
        for hold in self.read_holds()[0].values():
            self.set_state(hold.name, hold.probing_at(now).doc(), expect=hold.expected(), now=now)

    def release_held(self, now: datetime.datetime | None = None) -> int:
        """Queue all held mail again, whoever held it; commits."""
        with self.transaction():
            return self.db(self.outbox.status == Status.HELD).update(
                status=Status.QUEUED, next_attempt_on=now or utcnow(), held_fp=None
            )

    def count_held(self) -> int:
        return self.db(self.outbox.status == Status.HELD).count()

    def held_seconds(self, outbox_id: int, now: datetime.datetime) -> float:
        """How long the message has spent held, from its attempt log: each
        'held' attempt lasts until the next attempt (or ``now``). Held time
        is not charged to the message's max_age."""
        a, total = self.attempt, 0.0
        since: datetime.datetime | None = None
        for row in self.db(a.outbox_id == outbox_id).select(
            a.attempted_on, a.outcome, orderby=a.attempted_on | a.id
        ):
            if since is not None:
                total += (_datetime(row.attempted_on) - since).total_seconds()
            since = _datetime(row.attempted_on) if row.outcome == Logged.HELD else None
        if since is not None:
            total += (now - since).total_seconds()
        return total

    # --------------------------------------------------------- admin actions
    def retry(self, query: Query, now: datetime.datetime) -> int:
        """Queue the messages of ``query`` for delivery now, attempts from
        zero and no expiry, and cut a hold's probe wait short; commits."""
        with self.transaction():
            n = self.db(query).update(
                status=Status.QUEUED,
                next_attempt_on=now,
                attempts=0,
                expires_on=None,
                held_fp=None,
            )
            if n:
                self.hurry_probes(now)
        return n

    def cancel(self, query: Query) -> int:
        """Cancel the messages of ``query``; commits."""
        with self.transaction():
            return self.db(query).update(
                status=Status.CANCELLED, lease_owner=None, lease_until=None
            )

    def purge_sent(
        self, days: float, now: datetime.datetime, chunk: int = 500, who: str = "admin"
    ) -> tuple[int, ...]:
        """Delete mail sent more than ``days`` days before ``now`` with its
        attempts and attachments, committing every ``chunk`` messages, and log
        it for ``who`` (the admin's purge and retention's both come here).
        Returns (messages, attempts, attachments) deleted."""
        cutoff = now - datetime.timedelta(days=days)
        o, a = self.outbox, self.attempt
        # created_on <= sent_on always; it lets the (status, created_on) index work.
        query = (o.status == Status.SENT) & (o.created_on < cutoff) & (o.sent_on < cutoff)
        totals = [0, 0, 0]
        while True:
            with self.transaction():
                ids = [r.id for r in self.db(query).select(o.id, orderby=o.id, limitby=(0, chunk))]
                if not ids:
                    break
                totals[1] += self.db(a.outbox_id.belongs(ids)).delete()
                totals[2] += self._delete_attachments(ids)
                totals[0] += self.db(o.id.belongs(ids) & (o.status == Status.SENT)).delete()
        logger.info("%s: purged %d sent message(s) older than %d day(s)", who, totals[0], days)
        return tuple(totals)

    # ----------------------------------------------------------- admin reads
    def count_by_status(self) -> dict[str, int]:
        """{status: count} of the statuses present, in one GROUP BY (with no
        WHERE clause the database counts from an index)."""
        return dict(
            self.db.executesql("SELECT status, COUNT(*) FROM %s GROUP BY status" % self.tablename)
        )

    def address_contains(self, text: str) -> Query:
        """A query for rows whose address contains ``text``, ignoring ASCII
        case: LIKE does on SQLite and MariaDB (PostgreSQL overrides this)."""
        return self.outbox.address.contains(text)

    def attempts_by_slot(
        self, start: datetime.datetime, end: datetime.datetime, bucket: int
    ) -> list[tuple[float | decimal.Decimal, str, int]]:
        """(slot number, outcome, count) of attempts from ``start`` to ``end``,
        slot n covering ``bucket`` seconds from start + n * bucket."""
        sql = (
            "SELECT %s AS slot, outcome, COUNT(*) FROM %s_attempt WHERE "
            "attempted_on >= %s AND attempted_on < %s GROUP BY 1, outcome"
            % (self._slot_sql(), self.tablename, self.mark, self.mark)
        )
        return self.db.executesql(sql, placeholders=[self._slot_start(start), bucket, start, end])

    def _slot_sql(self) -> str:
        """SQL for an attempt's slot number, from parameters start and bucket."""
        raise NotImplementedError

    def _slot_start(self, start: datetime.datetime) -> datetime.datetime | str:
        return start

    # -------------------------------------------------------------- counters
    def take_unit(self, table: str, bucket: str, limit: int, expires: datetime.datetime) -> bool:
        """Add one to counter ``bucket`` of the table named ``table`` (columns
        bucket, unique, hits and expires_on; made at 1) while it is below
        ``limit``: True if it was. One statement, so the row lock covers the
        check; the caller's transaction commits."""
        execute(self.db, self._take_unit_sql(table), [bucket, expires, limit])
        return driver_cursor(self.db).rowcount in (1, 2)

    def _take_unit_sql(self, table: str) -> str:
        return (
            "INSERT INTO {t} (bucket, hits, expires_on) VALUES ({m}, 1, {m}) "
            "ON CONFLICT (bucket) DO UPDATE SET hits = {t}.hits + 1 "
            "WHERE {t}.hits < {m}"
        ).format(t=table, m=self.mark)

    def take_turn(self, name: str, old: object, new: object, now: datetime.datetime) -> bool:
        """Replace state ``name`` by ``new`` if it still is ``old`` (None: no
        value yet): True when this process won the turn. Commits."""
        with self.transaction():
            self._ensure_state(name, now)
            return self.set_state(name, new, expect=old, now=now)

    # ----------------------------------------------------------------- state
    def get_state(self, name: str) -> Any:
        row = self.db(self.state.name == name).select(self.state.doc).first()
        return json.loads(row.doc) if row and row.doc else None

    def set_state(
        self,
        name: str,
        value: object,
        expect: object = False,
        now: datetime.datetime | None = None,
    ) -> bool:
        """Store ``value`` (JSON); with ``expect`` only if it still equals that.

        Returns False when another worker changed it first. The caller's
        transaction commits it.
        """
        s = self.state
        text = json.dumps(value, sort_keys=True) if value is not None else None
        query = s.name == name
        if expect is not False:
            query &= s.doc == (json.dumps(expect, sort_keys=True) if expect is not None else None)
        if self.db(query).update(doc=text, updated_on=now or utcnow()):
            return True
        if expect is False or expect is None:
            if not self.db(s.name == name).count():
                s.insert(name=name, doc=text, updated_on=now or utcnow())
                return True
        return False


def _outbox_fields() -> list[Field]:
    return [
        Field("message_id", length=255, notnull=True, unique=True),
        Field("pe_id", "integer"),
        Field("address", length=255),
        Field("contact_method", length=32, default="EMAIL"),
        Field("status", length=16, notnull=True, default=Status.QUEUED.value),
        Field("priority", "integer", notnull=True, default=5),
        Field("attempts", "integer", notnull=True, default=0),
        Field("next_attempt_on", "datetime", notnull=True),
        Field("expires_on", "datetime"),
        Field("last_error", "text"),
        Field("last_code", "integer"),
        Field("sent_on", "datetime"),
        Field("created_on", "datetime", notnull=True),
        Field("lease_owner", length=128),
        Field("lease_until", "datetime"),
        Field("held_fp", length=32),
        Field("sender", length=512),
        Field("subject", "text"),
        Field("body", "text", notnull=True),  # JSON, see message.normalize
        Field("attachment_count", "integer", default=0),
        Field("byte_size", "integer", default=0),
        Field("refused", "text"),  # JSON {address: reply}, for good
        # JSON {address: reply}: recipients a server refused for now (4xx)
        # while it took others; the next delivery goes to them only.
        Field("deferred_rcpts", "text"),
    ]


def _attachment_fields() -> list[Field]:
    return [
        Field("outbox_id", "integer", notnull=True),
        Field("seq", "integer", notnull=True),
        Field("kind", length=8),
        Field("filename", length=255),
        Field("content_type", length=128),
        Field("content_id", length=255),
        Field("payload", "blob"),
        # set: the bytes are that row of the _blob table, shared by the
        # messages one send() queued for a list (payload empty here)
        Field("blob_id", "integer"),
    ]


def _blob_fields() -> list[Field]:
    """An attachment's bytes, shared by the attachment rows pointing at it."""
    return [Field("payload", "blob")]


def _attempt_fields() -> list[Field]:
    return [
        Field("outbox_id", "integer", notnull=True),
        Field("attempted_on", "datetime", notnull=True),
        Field("worker", length=128),
        Field("outcome", length=16),
        Field("code", "integer"),
        Field("error", "text"),
    ]


def _state_fields() -> list[Field]:
    return [
        Field("name", length=64, notnull=True, unique=True),
        Field("doc", "text"),
        Field("updated_on", "datetime"),
    ]


def _indexes(n: str) -> list[tuple[str, str, str]]:
    """(index, table, columns) of every index the outbox tables need."""
    return [
        # claim: equality on status, then in send order
        ("%s_due_idx" % n, n, "status, priority, next_attempt_on"),
        ("%s_lease_idx" % n, n, "lease_owner"),
        ("%s_lease_until_idx" % n, n, "status, lease_until"),
        ("%s_address_idx" % n, n, "address"),
        ("%s_pe_idx" % n, n, "pe_id"),
        ("%s_created_idx" % n, n, "status, created_on"),
        # the admin's list filtered by status, newest first, paged by id
        ("%s_status_id_idx" % n, n, "status, id"),
        ("%s_att_idx" % n, n + "_attachment", "outbox_id"),
        ("%s_att_blob_idx" % n, n + "_attachment", "blob_id"),
        ("%s_try_idx" % n, n + "_attempt", "outbox_id"),
        ("%s_try_on_idx" % n, n + "_attempt", "attempted_on"),
    ]


class Claimed(NamedTuple):
    """What delivery reads of a claimed row, built without pydal's Rows parsing of
    all 23 columns (about 0.1 ms a message, a fifth of a worker's CPU)."""

    id: int
    message_id: str
    pe_id: int | None
    address: str | None
    status: str
    attempts: int
    expires_on: datetime.datetime | None
    created_on: datetime.datetime
    sender: str | None
    body: str
    attachment_count: int | None
    sent_on: datetime.datetime | None = None
    refused: str | None = None  # JSON {address: reply}
    deferred_rcpts: str | None = None  # JSON {address: reply}


def _claimed(values: Sequence[object]) -> Claimed:
    row = Claimed._make(values)
    if (
        isinstance(row.created_on, str)
        or isinstance(row.expires_on, str)
        or isinstance(row.sent_on, str)
    ):
        row = row._replace(
            created_on=_datetime(row.created_on),
            expires_on=_datetime(row.expires_on),
            sent_on=_datetime(row.sent_on),
        )
    return row


@overload
def _datetime(value: str | datetime.datetime) -> datetime.datetime: ...
@overload
def _datetime(value: None) -> None: ...
def _datetime(value: str | datetime.datetime | None) -> datetime.datetime | None:
    """A datetime from a driver that gave text (SQLite without type detection)."""
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value.replace("T", " ")).replace(microsecond=0)
    return value


def _values(
    msg: Message,
    message_id: str,
    pe_id: int | None,
    sender: str | None,
    priority: int,
    not_before: datetime.datetime | None,
    expires_on: datetime.datetime | None,
) -> tuple[object, ...]:
    """The ``_ENQUEUED`` values of one queued message."""
    now = utcnow()
    first = msg.first_address()
    return (
        message_id,
        pe_id,
        first and first[:255],
        "EMAIL",
        Status.QUEUED.value,
        priority,
        0,
        max(now, _utc(not_before) or now),
        _utc(expires_on),
        now,
        sender,
        msg.subject,
        msg.to_json(),
        len(msg.attachments),
        msg.size,
    )


def _utc(when: datetime.datetime | None) -> datetime.datetime | None:
    """A send() time as the store keeps it: naive UTC, to the second."""
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(datetime.UTC).replace(tzinfo=None)
    return when.replace(microsecond=0)


def _bytes(payload: str | bytes | None) -> bytes:
    """A blob as bytes: pydal returns a blob that happens to be valid UTF-8
    (any text attachment) as str, and an empty one as '' or None."""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return payload or b""


class _Plain(enum.Enum):
    """Marker for a plain success, so record() can update those rows in one statement."""

    SENT = "sent"


SENT_PLAIN: Final = _Plain.SENT
# A row's new values: its columns, or SENT_PLAIN.
Changes = dict[str, object] | Literal[_Plain.SENT]
