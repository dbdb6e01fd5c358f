"""s3outbox.delivery.database: a second app copy (its own migration folder) on a
database the first one created adopts the tables instead of creating them
again, on every database; and the URI forms the scheduler can reopen."""

import os

import pytest
from pydal import DAL, Field

from s3outbox.delivery.database import AdoptingMigrator, shared_uri


def _host(db_uri, folder, tablename, extra=None):
    """One app copy: its own folder of migration files, pydal's migrations on
    (an SQLite file named by a relative path, as the app names it)."""
    os.makedirs(folder, exist_ok=True)
    if db_uri.startswith("sqlite"):
        db_uri = "sqlite://" + os.path.relpath(db_uri[len("sqlite://") :], folder)
    kwargs = dict(driver_args={"timeout": 30}) if db_uri.startswith("sqlite") else {}
    db = DAL(db_uri, folder=folder, adapter_args=dict(migrator=AdoptingMigrator), **kwargs)
    db.define_table(tablename, Field("name"), Field("size", "integer"))
    if extra:
        db.define_table(extra, Field("note"))
    return db


def test_second_copy_adopts_existing_tables(db_uri, tmp_path, tablename):
    first = _host(db_uri, str(tmp_path / "host1"), tablename)
    first[tablename].insert(name="from host 1", size=1)
    first.commit()
    extra = tablename + "_new"
    second = _host(db_uri, str(tmp_path / "host2"), tablename, extra=extra)
    try:
        # the existing table is used as it is, with host 1's row in it
        assert second(second[tablename]).select().first().name == "from host 1"
        second[tablename].insert(name="from host 2", size=2)
        second[extra].insert(note="a table that did not exist is created")
        second.commit()
        assert first(first[tablename]).count() == 2
        files = sorted(os.listdir(str(tmp_path / "host2")))
        assert any(f.endswith("_%s.table" % tablename) for f in files), files
        assert any(f.endswith("_%s.table" % extra) for f in files), files
        log = open(str(tmp_path / "host2" / "sql.log")).read()
        # pydal logs each table's CREATE, then "faked!" (adopted) or "success!"
        outcome = {}
        for entry in log.replace('"', "").replace("`", "").split("timestamp:")[1:]:
            name = entry.partition("CREATE TABLE ")[2].partition("(")[0].strip()
            outcome[name] = entry.strip().splitlines()[-1]
        assert outcome == {tablename: "faked!", extra: "success!"}, log
        # the next start of host 2 migrates from its own files as usual
        third = _host(db_uri, str(tmp_path / "host2"), tablename, extra=extra)
        assert third(third[extra]).count() == 1
        third.close()
    finally:
        first.rollback()  # PostgreSQL: an open transaction would block the DROP
        for name in (extra, tablename):
            second.executesql("DROP TABLE IF EXISTS %s" % name)
        second.commit()
        second.close()
        first.close()


@pytest.mark.parametrize(
    "uri,expected",
    [
        ("postgres://outbox@127.0.0.1/outbox", "postgres://outbox:@127.0.0.1/outbox"),
        ("postgres://outbox:@db/outbox", "postgres://outbox:@db/outbox"),
        ("postgres://outbox:p%40ss@db:5432/outbox", "postgres://outbox:p%40ss@db:5432/outbox"),
        ("postgres:psycopg2://u@h/d", "postgres:psycopg2://u:@h/d"),
        (
            "mysql://root@127.0.0.1/test?set_encoding=utf8mb4",
            "mysql://root:@127.0.0.1/test?set_encoding=utf8mb4",
        ),
        ("sqlite://storage.sqlite", "sqlite://storage.sqlite"),
    ],
    ids=["no password", "empty password", "encoded password", "driver", "mysql", "sqlite"],
)
def test_shared_uri(uri, expected):
    assert shared_uri(uri) == expected
