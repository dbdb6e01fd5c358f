"""delivery/pydal_internals.py on the pinned pydal: each private attribute the
outbox reads still exists and means what the outbox assumes."""

import os

import pytest
from pydal import DAL, Field

from s3outbox.delivery import pydal_internals as internals


@pytest.fixture
def db(tmp_path):
    db = DAL("sqlite://one.sqlite", folder=str(tmp_path))
    db.define_table("t_note", Field("body"))
    yield db
    db.close()


def test_engine_names_the_database():
    assert internals.db_engine(DAL("sqlite:memory")) == "sqlite"
    assert internals.db_engine(DAL(None)) == "None"


def test_driver_names_the_db_api_module(db):
    assert internals.driver_name(db) == "sqlite3"


def test_execute_runs_as_executesql_and_keeps_the_rowcount(db):
    internals.execute(db, "INSERT INTO t_note (body) VALUES (?)", ["a"])
    assert internals.driver_cursor(db).rowcount == 1
    assert db._timings[-1][0] == "INSERT INTO t_note (body) VALUES (?)"  # pydal's handlers ran
    internals.execute(db, "UPDATE t_note SET body=? WHERE body=?", ["b", "none"])
    assert internals.driver_cursor(db).rowcount == 0


def test_cursor_is_the_one_executesql_ran_on(db):
    db.executesql("INSERT INTO t_note (body) VALUES (?)", placeholders=["a"])
    assert internals.driver_cursor(db).lastrowid == db(db.t_note).select().first().id


def test_uri_hash_is_one_database_and_its_migration_files(tmp_path, db):
    again = DAL("sqlite://one.sqlite", folder=str(tmp_path))
    other = DAL("sqlite://two.sqlite", folder=str(tmp_path))
    assert internals.uri_hash(again) == internals.uri_hash(db) != internals.uri_hash(other)
    name = "%s_%s.table" % (internals.uri_hash(db), db.t_note)
    assert os.path.exists(os.path.join(str(tmp_path), name))


def test_forget_connection_makes_the_next_statement_open_one(db):
    first = internals.driver_cursor(db).connection
    first.close()  # as a database restart leaves it
    internals.forget_connection(db)
    assert db.executesql("SELECT COUNT(*) FROM t_note")[0][0] == 0
    assert internals.driver_cursor(db).connection is not first
