# -*- coding: utf-8 -*-
"""The message store: the outbox tables and every statement that changes them.

Claiming is the one place where workers compete. A claim marks a batch of due
rows ``sending`` with a lease (owner and end time) in one short transaction:

- PostgreSQL: ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``;
- MariaDB/MySQL: ``SELECT ... FOR UPDATE SKIP LOCKED``, then ``UPDATE`` by id
  (MariaDB refuses LIMIT inside an IN subquery);
- SQLite: the same single UPDATE; SQLite runs one writer at a time, so the
  statement is atomic without row locks.

Results are written only where the lease is still ours, so a worker that
outlived its lease cannot overwrite the work of the one that took over.
All times are naive UTC datetimes, to the second.
"""

import collections
import datetime
import json

from pydal import Field

from .message import bare, dumps, loads

QUEUED, SENDING, SENT, FAILED, HELD, CANCELLED = (
    "queued", "sending", "sent", "failed", "held", "cancelled")
STATUSES = (QUEUED, SENDING, SENT, FAILED, HELD, CANCELLED)


def utcnow():
    return datetime.datetime.utcnow().replace(microsecond=0)


# (database URI, table name) whose charset and indexes this process checked.
_SCHEMA_DONE = set()


class OutboxStore(object):
    """The outbox tables on ``db``, named from ``tablename`` (default msg_outbox)."""

    def __init__(self, db, tablename="msg_outbox", migrate=True):
        self.db = db
        self.tablename = tablename
        self.engine = db._adapter.dbengine
        self.mark = "?" if self.engine == "sqlite" else "%s"
        self._define(migrate)

    # ---------------------------------------------------------------- tables
    def _define(self, migrate):
        db, name = self.db, self.tablename
        if name not in db.tables:
            db.define_table(
                name,
                Field("message_id", length=255, notnull=True, unique=True),
                Field("pe_id", "integer"),
                Field("address", length=255),
                Field("contact_method", length=32, default="EMAIL"),
                Field("status", length=16, notnull=True, default=QUEUED),
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
                Field("body", "text", notnull=True),      # JSON, see message.normalize
                Field("attachment_count", "integer", default=0),
                Field("byte_size", "integer", default=0),
                Field("refused", "text"),                 # JSON {address: reply}
                migrate=migrate)
        if name + "_attachment" not in db.tables:
            db.define_table(
                name + "_attachment",
                Field("outbox_id", "integer", notnull=True),
                Field("seq", "integer", notnull=True),
                Field("kind", length=8),
                Field("filename", length=255),
                Field("content_type", length=128),
                Field("content_id", length=255),
                Field("payload", "blob"),
                migrate=migrate)
        if name + "_attempt" not in db.tables:
            db.define_table(
                name + "_attempt",
                Field("outbox_id", "integer", notnull=True),
                Field("attempted_on", "datetime", notnull=True),
                Field("worker", length=128),
                Field("outcome", length=16),
                Field("code", "integer"),
                Field("error", "text"),
                migrate=migrate)
        if name + "_state" not in db.tables:
            db.define_table(
                name + "_state",
                Field("name", length=64, notnull=True, unique=True),
                Field("doc", "text"),
                Field("updated_on", "datetime"),
                migrate=migrate)
        self.outbox = db[name]
        self.attachment = db[name + "_attachment"]
        self.attempt = db[name + "_attempt"]
        self.state = db[name + "_state"]
        key = (db._uri, name)
        if migrate and key not in _SCHEMA_DONE:
            # Once a process: web2py runs the models on every request.
            if self.engine == "mysql":
                self._utf8mb4()
            self._indexes()
            _SCHEMA_DONE.add(key)

    def _utf8mb4(self):
        """pydal creates MySQL tables as utf8 (3 bytes), where an emoji in a
        subject, name or body turns into '?': convert ours to utf8mb4 once."""
        names = [self.tablename + s for s in ("", "_attachment", "_attempt", "_state")]
        rows = self.db.executesql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema="
            "DATABASE() AND table_name IN (%s) AND LEFT(table_collation, 7) "
            "<> 'utf8mb4'" % ",".join(["%s"] * len(names)), placeholders=names)
        for (name,) in rows:
            self.db.executesql("ALTER TABLE %s CONVERT TO CHARACTER SET utf8mb4 "
                               "COLLATE utf8mb4_unicode_ci" % name)

    def _indexes(self):
        """Create the indexes once; then a state row says they are there.

        MailS3 is built on every request. CREATE INDEX, even IF NOT EXISTS,
        takes a table lock on PostgreSQL that waits for every open transaction
        that queued mail, and queues all later writers behind it.
        """
        n = self.tablename
        wanted = [
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
            ("%s_try_idx" % n, n + "_attempt", "outbox_id"),
            ("%s_try_on_idx" % n, n + "_attempt", "attempted_on"),
        ]
        names = [index for index, _, _ in wanted]
        if self.get_state("indexes") == names:
            return
        for index, table, columns in wanted:
            self.db.executesql("CREATE INDEX IF NOT EXISTS %s ON %s (%s)"
                               % (index, table, columns))
        now = utcnow()
        self._ensure_state("indexes", now)
        self.set_state("indexes", names, now=now)
        self.db.commit()

    def _sql(self, sql, args=(), rows=False):
        """Run ``sql`` with %s placeholders written the driver's way."""
        if self.mark != "%s":
            sql = sql.replace("%s", self.mark)
        return self.db.executesql(sql, placeholders=list(args)) if rows else \
            self.db._adapter.execute(sql, list(args))

    # --------------------------------------------------------------- enqueue
    def enqueue(self, msg, message_id, pe_id=None, sender=None, priority=5,
                not_before=None, expires_on=None):
        """Insert one message (and its attachments); the caller commits.

        The inserts run inside a savepoint: if one fails, nothing of this
        message is kept and the caller's transaction stays usable (PostgreSQL
        refuses every later statement of a transaction in which one failed).
        """
        now = utcnow()
        first = (msg["to"] or msg["cc"] or msg["bcc"] or [None])[0]
        first = first and bare(first)  # what an admin searches for
        parts = msg.pop("attachments")
        size = msg.pop("size")
        values = dict(
            message_id=message_id, pe_id=pe_id, address=first and first[:255],
            contact_method="EMAIL", status=QUEUED, priority=priority, attempts=0,
            next_attempt_on=max(now, _utc(not_before) or now),
            expires_on=_utc(expires_on), created_on=now, sender=sender,
            subject=msg["subject"], body=dumps(msg), attachment_count=len(parts),
            byte_size=size)
        self._savepoint("SAVEPOINT")
        try:
            row_id = self._insert_row(values)
            for position, part in enumerate(parts):
                self.attachment.insert(outbox_id=row_id, seq=position, **part)
        except Exception:
            try:
                self._savepoint("ROLLBACK TO SAVEPOINT")
            except Exception:
                pass  # the first error is the one to report
            raise
        self._savepoint("RELEASE SAVEPOINT")
        return row_id

    def _insert_row(self, values):
        """INSERT with parameters, returning the new id: pydal's insert writes
        every value into the SQL text, which was a third of send()'s time."""
        names = list(values)
        sql = "INSERT INTO %s (%s) VALUES (%s)" % (
            self.tablename, ", ".join(names), ", ".join([self.mark] * len(names)))
        if self.engine == "postgres":
            sql += " RETURNING id"
        adapter = self.db._adapter
        adapter.execute(sql, [values[n] for n in names])
        if self.engine == "postgres":
            return adapter.cursor.fetchone()[0]
        return adapter.cursor.lastrowid

    def _savepoint(self, verb):
        adapter = self.db._adapter
        if verb == "SAVEPOINT" and self.engine == "sqlite" and \
                not adapter.connection.in_transaction:
            # Outside a transaction SQLite makes the savepoint the transaction
            # and its RELEASE a commit; the caller's transaction must decide.
            adapter.execute("BEGIN")
        adapter.execute("%s s3outbox_enqueue" % verb)

    @staticmethod
    def content(row):
        return loads(row.body)

    def attachments(self, outbox_id):
        a = self.attachment
        return [dict(kind=r.kind, filename=r.filename, content_type=r.content_type,
                     content_id=r.content_id, payload=_bytes(r.payload))
                for r in self.db(a.outbox_id == outbox_id).select(orderby=a.seq,
                                                                   cacheable=True)]

    # ----------------------------------------------------------------- claim
    def requeue_expired(self, now, max_attempts):
        """Give rows whose worker died (lease ran out) back to the queue.

        A lost lease counts as an attempt, so a message that kills every
        worker that sends it (say, out of memory) fails after
        ``max_attempts`` instead of taking a batch down for ever.
        """
        t = self.outbox
        stale = (t.status == SENDING) & (t.lease_until < now)
        if not self.db(stale).select(t.id, limitby=(0, 1)):
            return 0
        why = "the worker sending it stopped before recording the result " \
              "(its lease ran out)"
        self.db(stale & (t.attempts + 1 >= max_attempts)).update(
            status=FAILED, attempts=t.attempts + 1, lease_owner=None, lease_until=None,
            last_error="gave up after %d attempts: %s" % (max_attempts, why))
        n = self.db(stale).update(status=QUEUED, next_attempt_on=now, lease_until=None,
                                  attempts=t.attempts + 1,
                                  last_error=why + "; queued again")
        self.db.commit()
        return n

    def claim(self, owner, limit, lease, now, rate=None):
        """Mark up to ``limit`` due rows as ours and return them, committed.

        ``rate`` is (max messages, window seconds) across all workers, or None.
        """
        # A claim is its own transaction: counting from an older read
        # snapshot (MariaDB's REPEATABLE READ) would miss other workers' work.
        self.db.commit()
        if rate:
            limit = min(limit, self._rate_room(now, *rate))
        if limit <= 0:
            self.db.commit()
            return []
        t = self.tablename
        pick = ("SELECT id FROM %s WHERE status='queued' AND next_attempt_on<=%%s "
                "ORDER BY priority, next_attempt_on, id LIMIT %d" % (t, int(limit)))
        claim = ("UPDATE %s SET status='sending', lease_owner=%%s, lease_until=%%s "
                 "WHERE id IN " % t)
        until = now + datetime.timedelta(seconds=lease)
        if self.engine == "mysql":
            ids = [r[0] for r in self._sql(pick + " FOR UPDATE SKIP LOCKED", [now],
                                           rows=True)]
            if ids:
                self._sql(claim + "(%s)" % ",".join(str(int(i)) for i in ids),
                          [owner, until])
        else:
            lock = " FOR UPDATE SKIP LOCKED" if self.engine == "postgres" else ""
            self._sql(claim + "(" + pick + lock + ")", [owner, until, now])
        self.db.commit()
        rows = self._sql("SELECT %s FROM %s WHERE lease_owner=%%s ORDER BY priority, "
                         "next_attempt_on, id" % (", ".join(Claimed._fields), t),
                         [owner], rows=True)
        return [_claimed(r) for r in rows]

    def _rate_room(self, now, count, window):
        """How many more messages the rate limit allows now, serialised.

        A first count without a lock spares the write while the limit is used
        up. Then updating the lock row makes concurrent claimers wait for each
        other (a row lock on PostgreSQL and MariaDB, the write lock on SQLite)
        before the count that decides.
        """
        if self._rate_used(now, window) >= count:
            return 0
        self._ensure_state("rate_lock", now)
        # The lock is the transaction's first statement, so that MariaDB's
        # read snapshot for the count below is taken once it is ours.
        self.db.commit()
        self.db(self.state.name == "rate_lock").update(updated_on=now)
        return count - self._rate_used(now, window)

    def _rate_used(self, now, window):
        """Messages sent in the window, or being sent now, by all workers.

        One statement, so one snapshot on PostgreSQL: record() turns
        ``sending`` into a logged attempt between two separate counts.
        An attempt logged at second S went out at most a second earlier
        (times are to the second), hence ``>=``.
        """
        since = now - datetime.timedelta(seconds=window)
        sql = ("SELECT (SELECT COUNT(*) FROM %s_attempt WHERE attempted_on>=%%s AND "
               "outcome='sent') + (SELECT COUNT(*) FROM %s WHERE status='sending')"
               % (self.tablename, self.tablename))
        return int(self._sql(sql, [since], rows=True)[0][0])

    def claim_name(self, name, now):
        """Insert the state row ``name``; True only for the one transaction
        that did (concurrent inserts wait on the unique name, then find it)."""
        verb, tail = {"sqlite": ("INSERT OR IGNORE", ""),
                      "mysql": ("INSERT IGNORE", "")}.get(
            self.engine, ("INSERT", " ON CONFLICT (name) DO NOTHING"))
        self._sql("%s INTO %s_state (name, updated_on) VALUES (%%s, %%s)%s"
                  % (verb, self.tablename, tail), [name, now])
        return self.db._adapter.cursor.rowcount == 1

    def _ensure_state(self, name, now):
        """Create the state row ``name`` unless it exists, even if another
        worker creates it at the same moment (no duplicate-key error)."""
        if self.db(self.state.name == name).select(self.state.id).first():
            return
        verb, tail = {"sqlite": ("INSERT OR IGNORE", ""),
                      "mysql": ("INSERT IGNORE", "")}.get(
            self.engine, ("INSERT", " ON CONFLICT (name) DO NOTHING"))
        self._sql("%s INTO %s_state (name, updated_on) VALUES (%%s, %%s)%s"
                  % (verb, self.tablename, tail), [name, now])

    # ---------------------------------------------------------------- record
    def record(self, owner, now, worker, results):
        """Write the outcome of each claimed row; one transaction.

        ``results`` holds (row id, changes dict, attempt dict or None).
        Rows whose changes are identical (plain successes) go in one UPDATE.
        """
        o, db = self.outbox, self.db
        free = dict(lease_owner=None, lease_until=None)
        plain_sent = [rid for rid, changes, _ in results if changes is SENT_PLAIN]
        if plain_sent:
            db(o.id.belongs(plain_sent) & (o.lease_owner == owner)).update(
                status=SENT, sent_on=now, attempts=o.attempts + 1, last_error=None,
                last_code=250, **free)
        for rid, changes, _ in results:
            if changes is not SENT_PLAIN:
                changes = dict(changes, **free)
                db((o.id == rid) & (o.lease_owner == owner)).update(**changes)
        attempts = [(rid, now, worker, a["outcome"], a.get("code"), a.get("error"))
                    for rid, _, a in results if a]
        if attempts:
            self._insert_attempts(attempts)
        db.commit()

    def _insert_attempts(self, values):
        """One statement per 100 attempts: psycopg2's executemany runs one
        INSERT, one round trip, per row. SQLite runs in-process: no trips."""
        head = ("INSERT INTO %s_attempt (outbox_id, attempted_on, worker, outcome, "
                "code, error) VALUES " % self.tablename)
        row = "(%s)" % ",".join([self.mark] * 6)
        cursor = self.db._adapter.cursor
        if self.engine == "sqlite":
            cursor.executemany(head + row, values)
            return
        for start in range(0, len(values), 100):
            chunk = values[start:start + 100]
            cursor.execute(head + ",".join([row] * len(chunk)),
                           [value for one in chunk for value in one])

    # ---------------------------------------------------------- hold/release
    # Per settings fingerprint and host ("<fp>:<host>", the key), two state
    # rows: "held:<key>" {fp, reason, probe_after}: cannot deliver now;
    # "reached:<key>": its updated_on is when it last reached the server.
    # Only a worker whose own settings reached the server releases held mail
    # (delivery.py decides when).
    def pending(self, now):
        """(mail is due, mail is held): one statement for an idle pass."""
        t = self.tablename
        due, held = self._sql(
            "SELECT (SELECT COUNT(*) FROM (SELECT id FROM %s WHERE status='queued' "
            "AND next_attempt_on<=%%s LIMIT 1) d), (SELECT COUNT(*) FROM (SELECT id "
            "FROM %s WHERE status='held' LIMIT 1) h)" % (t, t), [now], rows=True)[0]
        return bool(due), bool(held)

    def hosts(self):
        """({key: held state}, {key: when it last reached the server}), one read."""
        s, held, reached = self.state, {}, {}
        for row in self.db(s.name.startswith("held:") |
                           s.name.startswith("reached:")).select(
                s.name, s.doc, s.updated_on):
            kind, _, key = row.name.partition(":")
            if kind == "reached":
                reached[key] = _datetime(row.updated_on)
            elif row.doc:
                held[key] = json.loads(row.doc)
        return held, reached

    def mark_reached(self, key, now):
        self._ensure_state("reached:" + key, now)
        self.db(self.state.name == "reached:" + key).update(updated_on=now)

    def hurry_probes(self, now):
        """Every hold probes on the next pass (the admin asked for a retry)."""
        held, _ = self.hosts()
        for key, state in held.items():
            self.set_state("held:" + key, dict(state, probe_after=str(now)),
                           expect=state, now=now)

    def release_held(self, now=None):
        """Queue all held mail again, whoever held it."""
        return self.db(self.outbox.status == HELD).update(
            status=QUEUED, next_attempt_on=now or utcnow(), held_fp=None)

    def count_held(self):
        return self.db(self.outbox.status == HELD).count()

    def held_seconds(self, outbox_id, now):
        """How long the message has spent held, from its attempt log: each
        'held' attempt lasts until the next attempt (or ``now``). Held time
        is not charged to the message's max_age."""
        a, total, since = self.attempt, 0.0, None
        for row in self.db(a.outbox_id == outbox_id).select(
                a.attempted_on, a.outcome, orderby=a.attempted_on | a.id):
            if since is not None:
                total += (_datetime(row.attempted_on) - since).total_seconds()
            since = _datetime(row.attempted_on) if row.outcome == HELD else None
        if since is not None:
            total += (now - since).total_seconds()
        return total

    # ----------------------------------------------------------------- state
    def get_state(self, name):
        row = self.db(self.state.name == name).select(self.state.doc).first()
        return json.loads(row.doc) if row and row.doc else None

    def set_state(self, name, value, expect=False, now=None):
        """Store ``value`` (JSON); with ``expect`` only if it still equals that.

        Returns False when another worker changed it first.
        """
        s = self.state
        text = json.dumps(value, sort_keys=True) if value is not None else None
        query = s.name == name
        if expect is not False:
            query &= s.doc == (json.dumps(expect, sort_keys=True)
                                 if expect is not None else None)
        if self.db(query).update(doc=text, updated_on=now or utcnow()):
            return True
        if expect is False or expect is None:
            if not self.db(s.name == name).count():
                s.insert(name=name, doc=text, updated_on=now or utcnow())
                return True
        return False


# What delivery reads of a claimed row, built without pydal's Rows parsing of
# all 23 columns (about 0.1 ms a message, a fifth of a worker's CPU).
Claimed = collections.namedtuple("Claimed", (
    "id", "message_id", "pe_id", "address", "status", "attempts", "expires_on",
    "created_on", "sender", "body", "attachment_count"))


def _claimed(values):
    row = Claimed._make(values)
    if isinstance(row.created_on, str) or isinstance(row.expires_on, str):
        row = row._replace(created_on=_datetime(row.created_on),
                           expires_on=_datetime(row.expires_on))
    return row


def _datetime(value):
    """A datetime from a driver that gave text (SQLite without type detection)."""
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value.replace("T", " ")).replace(
            microsecond=0)
    return value


def _utc(when):
    """A send() time as the store keeps it: naive UTC, to the second."""
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return when.replace(microsecond=0)


def _bytes(payload):
    """A blob as bytes: pydal returns a blob that happens to be valid UTF-8
    (any text attachment) as str, and an empty one as '' or None."""
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return payload or b""


# Marker for a plain success, so record() can update those rows in one statement.
SENT_PLAIN = object()
