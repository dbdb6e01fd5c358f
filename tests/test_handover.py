"""Insert-or-nothing on a unique key, as the Eden hand-over uses it (one link
an Eden msg_outbox row, modules/s3outbox/eden.py): two connections inserting
one key give one row, the second waiting for the first to commit, on every
database; make_unique() gives a table that repeats keys its unique index."""

import threading

import pytest
from pydal import Field

from s3outbox import MailS3


@pytest.fixture
def links(make_db, tablename):
    """(make_db, a MailS3's store, the name of a link-like table)."""
    db = make_db()
    store = MailS3(db, tablename=tablename).store
    name = tablename + "_link"
    db.define_table(name, Field("eden_outbox_id", "integer"), Field("outbox_id", "integer"))
    db.commit()
    yield make_db, store, name
    db.rollback()
    db.executesql("DROP TABLE IF EXISTS %s" % name)
    db.commit()


def test_make_unique_keeps_the_first_of_each_key_then_refuses_repeats(links):
    _, store, name = links
    table = store.db[name]
    for eden_id, outbox_id in ((1, 10), (1, 11), (2, 12), (1, 13)):
        table.insert(eden_outbox_id=eden_id, outbox_id=outbox_id)
    store.db.commit()
    store.make_unique(name, "eden_outbox_id", name + "_row")
    store.make_unique(name, "eden_outbox_id", name + "_row")  # again: no change
    rows = store.db(table).select(orderby=table.eden_outbox_id)
    assert [(r.eden_outbox_id, r.outbox_id) for r in rows] == [(1, 10), (2, 12)]
    assert store.insert_or_nothing(name, dict(eden_outbox_id=1, outbox_id=14)) is False
    assert store.insert_or_nothing(name, dict(eden_outbox_id=3, outbox_id=15)) is True
    store.db.commit()
    assert store.db(table).count() == 3


def test_concurrent_inserts_of_one_key_give_one_row(links):
    """The second insert waits for the first transaction; once it commits,
    the second inserts nothing and its transaction goes on."""
    make_db, store, name = links
    store.make_unique(name, "eden_outbox_id", name + "_row")
    assert store.insert_or_nothing(name, dict(eden_outbox_id=7, outbox_id=1)) is True
    result = {}

    def second():
        other = MailS3(make_db(), tablename=store.tablename, migrate=False).store
        other.db.define_table(
            name, Field("eden_outbox_id", "integer"), Field("outbox_id", "integer"), migrate=False
        )
        result["inserted"] = other.insert_or_nothing(name, dict(eden_outbox_id=7, outbox_id=2))
        result["after"] = other.db.executesql("SELECT COUNT(*) FROM %s" % name)[0][0]
        other.db.commit()

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(1)
    assert thread.is_alive(), "the second insert did not wait for the first"
    store.db.commit()
    thread.join(60)
    assert result == dict(inserted=False, after=1)
    table = store.db[name]
    assert [r.outbox_id for r in store.db(table).select()] == [1]
