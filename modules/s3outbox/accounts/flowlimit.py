"""Limits on account-flow mail (verification, password reset, username),
shared by every web process through the database.

Each limit is a counter row per (scope, key, time window): per address, per
client network and one for the whole site. ``allow()`` takes one unit from
each in one savepoint; if any is spent, the savepoint is rolled back, so a
refused request changes nothing and costs the flooder's target nothing. The
counters live in the ``<tablename>_flowlimit`` table (tables.py).

The increment is one upsert (insert at 1, or ``hits + 1`` while below the
limit): the database's row lock makes the check and the increment one step,
so two processes can never both take the last unit (PostgreSQL and MariaDB re-read
the row after waiting for its lock; SQLite runs one writer at a time). The
row lock is held until the request commits, which is short. Keys are stored
as hashes: the table holds no address.

Windows are fixed (aligned on ``window`` seconds), so a burst across a window
edge can reach twice a limit; the limits are set low enough for that.
"""

import datetime
import hashlib
import ipaddress
from collections.abc import Iterable
from typing import Any

from ..delivery.store import OutboxStore, utcnow
from . import tables

_EPOCH = datetime.datetime(1970, 1, 1)
# (scope, key, limit): one counter of a request; a limit of 0 or None is off.
Limit = tuple[str, str, int | None]


def _slot(now: datetime.datetime | None, window: int) -> int:
    """The number of the ``window``-second window that holds ``now`` (UTC)."""
    now = now or utcnow()
    return int((now - _EPOCH).total_seconds()) // window


class _Refused(Exception):
    pass


def client_key(env: Any, trust_forwarded: bool = False) -> str:
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


class FlowLimiter:
    """Counters in the store's ``<tablename>_flowlimit`` table (tables.py)."""

    def __init__(self, store: OutboxStore) -> None:
        self.store, self.db = store, store.db

    def allow(
        self, limits: Iterable[Limit], window: float = 3600, now: datetime.datetime | None = None
    ) -> bool:
        """Take one unit from every ``(scope, key, limit)``; True if all had one.

        A limit of 0 or None is off. On False nothing has changed. The caller's
        transaction commits the counts.
        """
        return self.spent(limits, window, now) is None

    def spent(
        self, limits: Iterable[Limit], window: float = 3600, now: datetime.datetime | None = None
    ) -> str | None:
        """As ``allow``, but say which limit refused: the ``scope`` of the
        first one used up, or None when a unit of each was taken."""
        seconds = max(1, int(window))
        slot = _slot(now, seconds)
        expires = _EPOCH + datetime.timedelta(seconds=(slot + 1) * seconds)
        try:
            with self.store.savepoint():
                for scope, key, limit in limits:
                    if limit and not tables.take_unit(
                        self.store, self._bucket(scope, key, slot), int(limit), expires
                    ):
                        raise _Refused(scope)
        except _Refused as e:
            return e.args[0]
        return None

    @staticmethod
    def _bucket(scope: str, key: str, slot: int) -> str:
        digest = hashlib.sha256(("%s\x00%s" % (scope, key)).encode("utf-8"))
        return "%s:%s:%d" % (scope[:8], digest.hexdigest()[:40], slot)

    def used(
        self, scope: str, key: str, window: float = 3600, now: datetime.datetime | None = None
    ) -> int:
        """How many units ``(scope, key)`` has used in the current window."""
        slot = _slot(now, max(1, int(window)))
        return tables.units_used(self.store, self._bucket(scope, key, slot))

    def forget_expired(self, now: datetime.datetime | None = None) -> int:
        """Delete counters of past windows (commits); returns how many."""
        return tables.forget_units(self.store, now or utcnow())
