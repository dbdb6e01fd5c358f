# -*- coding: utf-8 -*-
"""Limits on account-flow mail (verification, password reset, username),
shared by every web process through the database.

Each limit is a counter row per (scope, key, time window): per address, per
client network and one for the whole site. ``allow()`` takes one unit from
each in one savepoint; if any is spent, the savepoint is rolled back, so a
refused request changes nothing and costs the flooder's target nothing.

The increment is one upsert (insert at 1, or ``hits + 1`` while below the
limit): the database's row lock makes the check and the increment one step,
so two processes can never both take the last unit (PostgreSQL and MariaDB re-read
the row after waiting for its lock; SQLite runs one writer at a time). The
row lock is held until the request commits, which is short. Keys are stored
as hashes: the table holds no address.

Windows are fixed (aligned on ``window`` seconds), so a burst across a window
edge can reach twice a limit; the limits are set low enough for that.
"""

import contextlib
import datetime
import hashlib
import ipaddress
import itertools

from pydal import Field

_names = itertools.count()
_EPOCH = datetime.datetime(1970, 1, 1)


def _slot(now, window):
    """The number of the ``window``-second window that holds ``now`` (UTC)."""
    now = now or datetime.datetime.utcnow()
    return int((now - _EPOCH).total_seconds()) // window


@contextlib.contextmanager
def savepoint(db, keep=True):
    """Run the block in a savepoint of the caller's transaction; it is rolled
    back on an exception, or always when ``keep`` is False."""
    adapter = db._adapter
    engine = adapter.dbengine
    if engine == "sqlite" and not adapter.connection.in_transaction:
        # Outside a transaction SQLite makes a savepoint the transaction and
        # its RELEASE a commit; the caller's transaction must decide.
        adapter.execute("BEGIN")
    name = "s3outbox_sp%d" % next(_names)
    adapter.execute("SAVEPOINT %s" % name)
    try:
        yield
    except BaseException:
        adapter.execute("ROLLBACK TO SAVEPOINT %s" % name)
        adapter.execute("RELEASE SAVEPOINT %s" % name)
        raise
    if not keep:
        adapter.execute("ROLLBACK TO SAVEPOINT %s" % name)
    adapter.execute("RELEASE SAVEPOINT %s" % name)


class _Refused(Exception):
    pass


def client_key(env, trust_forwarded=False):
    """The client's network: its IPv4 address, or its IPv6 /64 (one host
    commonly holds a whole /64). ``X-Forwarded-For`` is read only when the
    site sits behind its own proxy (``trust_forwarded``), and then only the
    last entry, the one that proxy added; web2py's ``request.client`` takes
    the first, which any client can write."""
    text = env.get("remote_addr") or ""
    if trust_forwarded and env.get("http_x_forwarded_for"):
        text = env.get("http_x_forwarded_for").split(",")[-1].strip()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return "unknown"
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network("%s/64" % address, strict=False))
    return str(address)


class FlowLimiter(object):
    """Counters in table ``<tablename>_flowlimit`` on ``db``, defined when missing."""

    def __init__(self, db, tablename="msg_outbox", migrate=True):
        self.db = db
        self.tablename = tablename + "_flowlimit"
        if self.tablename not in db.tables:
            db.define_table(self.tablename,
                            Field("bucket", length=80, notnull=True, unique=True),
                            Field("hits", "integer", notnull=True, default=0),
                            Field("expires_on", "datetime", notnull=True),
                            migrate=migrate)
        self.table = db[self.tablename]
        self.engine = db._adapter.dbengine
        self.mark = "?" if self.engine == "sqlite" else "%s"

    def allow(self, limits, window=3600, now=None):
        """Take one unit from every ``(scope, key, limit)``; True if all had one.

        A limit of 0 or None is off. On False nothing has changed. The caller's
        transaction commits the counts.
        """
        window = max(1, int(window))
        slot = _slot(now, window)
        expires = _EPOCH + datetime.timedelta(seconds=(slot + 1) * window)
        try:
            with savepoint(self.db):
                for scope, key, limit in limits:
                    if limit:
                        self._take(self._bucket(scope, key, slot), int(limit), expires)
        except _Refused:
            return False
        return True

    @staticmethod
    def _bucket(scope, key, slot):
        digest = hashlib.sha256(("%s\x00%s" % (scope, key)).encode("utf-8"))
        return "%s:%s:%d" % (scope[:8], digest.hexdigest()[:40], slot)

    def _take(self, bucket, limit, expires):
        """Insert the counter at 1, or add 1 if it is below ``limit``; one
        statement, so the row lock covers the check (an INSERT IGNORE and an
        UPDATE deadlocked on MariaDB when many asked for a new counter)."""
        adapter, t, m = self.db._adapter, self.tablename, self.mark
        if self.engine == "mysql":
            # Affected rows: 1 inserted, 2 updated, 0 left as it was.
            sql = ("INSERT INTO {t} (bucket, hits, expires_on) VALUES ({m}, 1, {m}) "
                   "ON DUPLICATE KEY UPDATE hits = IF(hits < {m}, hits + 1, hits)")
        else:
            sql = ("INSERT INTO {t} (bucket, hits, expires_on) VALUES ({m}, 1, {m}) "
                   "ON CONFLICT (bucket) DO UPDATE SET hits = {t}.hits + 1 "
                   "WHERE {t}.hits < {m}")
        adapter.execute(sql.format(t=t, m=m), [bucket, expires, limit])
        if adapter.cursor.rowcount not in (1, 2):
            raise _Refused()

    def used(self, scope, key, window=3600, now=None):
        """How many units ``(scope, key)`` has used in the current window."""
        slot = _slot(now, max(1, int(window)))
        row = self.db(self.table.bucket == self._bucket(scope, key, slot)).select(
            self.table.hits).first()
        return row.hits if row else 0

    def forget_expired(self, now=None):
        """Delete counters of past windows; returns how many."""
        now = now or datetime.datetime.utcnow()
        return self.db(self.table.expires_on <= now).delete()
