"""The account-flow tables beside the outbox's, and the statements on them.

``<name>_flowmail`` marks the messages of account flows (retention.py redacts
and scrubs them); ``<name>_flowlimit`` holds the rate-limit counters
(flowlimit.py; keys are hashes). ``define`` is registered with the core
(accounts/settings.py), so every store defines them with its own tables,
under its table name and with its ``migrate``.
"""

import datetime
from collections.abc import Iterable

from pydal import Field

from ..delivery.message import dumps
from ..delivery.store import OutboxStore, Status, Table


def define(store: OutboxStore, migrate: bool = True) -> None:
    """Define the two tables on the store's database when they are missing."""
    db, name = store.db, store.tablename
    if name + "_flowmail" not in db.tables:
        db.define_table(
            name + "_flowmail",
            Field("outbox_id", "integer", notnull=True, unique=True),
            Field("flow", length=32),
            migrate=migrate,
        )
    if name + "_flowlimit" not in db.tables:
        db.define_table(
            name + "_flowlimit",
            Field("bucket", length=80, notnull=True, unique=True),
            Field("hits", "integer", notnull=True, default=0),
            Field("expires_on", "datetime", notnull=True),
            migrate=migrate,
        )


def marks(store: OutboxStore) -> Table:
    return store.db[store.tablename + "_flowmail"]


def counters(store: OutboxStore) -> Table:
    return store.db[store.tablename + "_flowlimit"]


def mark(store: OutboxStore, outbox_id: int, flow: str | None) -> None:
    """Mark message ``outbox_id`` as mail of account flow ``flow``; the
    caller's transaction commits it with the message."""
    marks(store).insert(outbox_id=outbox_id, flow=(flow or "")[:32])


def flows(store: OutboxStore, ids: Iterable[int]) -> dict[int, str]:
    """{outbox id: flow} for the marked messages among ``ids``."""
    if not ids:
        return {}
    m = marks(store)
    rows = store.db(m.outbox_id.belongs(list(ids))).select(m.outbox_id, m.flow)
    return {r.outbox_id: r.flow for r in rows}


def scrub_sent(store: OutboxStore, cutoff: datetime.datetime, text: str, limit: int = 500) -> int:
    """Replace the bodies of marked messages sent before ``cutoff`` by
    ``text`` and forget their marks; commits; how many."""
    o, m, db = store.outbox, marks(store), store.db
    with store.transaction():
        rows = db((m.outbox_id == o.id) & (o.status == Status.SENT) & (o.sent_on < cutoff)).select(
            o.id, o.body, limitby=(0, limit)
        )
        for row in rows:
            content = store.content(row) or {}
            content.update(text=text, html=None)
            db((o.id == row.id) & (o.status == Status.SENT)).update(body=dumps(content))
        if rows:
            db(m.outbox_id.belongs([r.id for r in rows])).delete()
    return len(rows)


def take_unit(store: OutboxStore, bucket: str, limit: int, expires: datetime.datetime) -> bool:
    """One unit of counter ``bucket`` while it is below ``limit`` (the
    store's upsert, store.take_unit); the caller's transaction commits."""
    return store.take_unit(store.tablename + "_flowlimit", bucket, limit, expires)


def units_used(store: OutboxStore, bucket: str) -> int:
    c = counters(store)
    row = store.db(c.bucket == bucket).select(c.hits).first()
    return row.hits if row else 0


def forget_units(store: OutboxStore, now: datetime.datetime) -> int:
    """Delete the counters of past windows; commits; how many."""
    c = counters(store)
    with store.transaction():
        return store.db(c.expires_on <= now).delete()
