"""open_store(): a store per dialect; an engine without a safe claim is
refused when the mailer is built, with the supported engines named."""

import pytest
from pydal import DAL

from s3outbox import MailS3
from s3outbox.delivery.dialects import (
    MysqlStore,
    PostgresStore,
    SqliteStore,
    UnsupportedDatabase,
    open_store,
)


def test_sqlite_gets_its_store(tmp_path):
    db = DAL("sqlite://%s" % (tmp_path / "x.sqlite"), folder=str(tmp_path))
    store = open_store(db, "tob_factory")
    assert type(store) is SqliteStore and store.mark == "?"
    assert {PostgresStore.engine, MysqlStore.engine} == {"postgres", "mysql"}


def test_an_engine_without_a_safe_claim_is_refused_at_construction():
    # SpatiaLite is a pydal engine of its own; its connection opens lazily,
    # so the refusal comes before any statement.
    db = DAL("spatialite:memory")
    with pytest.raises(UnsupportedDatabase) as refused:
        MailS3(db)
    text = str(refused.value)
    assert "SQLite, PostgreSQL and MariaDB/MySQL" in text
    assert "mysql, postgres, sqlite" in text and "'spatialite'" in text
    assert "msg_outbox" not in db.tables
