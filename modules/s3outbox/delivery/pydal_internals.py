"""What the outbox reads of pydal that pydal does not make public, one function each.

pydal 20220814.1 (the one web2py 2.26.1 bundles) has no public name for these.
Everything else goes through pydal's public API (``db.executesql``,
``db.recycle_connection_in_pool_or_close``, ``str(table)``...).
tests/unit/test_pydal_internals.py checks each function on the pinned version,
so a pydal that changes one fails there, not in a delivery pass.
"""

from typing import Any


def db_engine(db: Any) -> str:
    """The engine's name as pydal spells it ("sqlite", "postgres", "mysql",
    "None" for ``DAL(None)``): which SQL the store writes."""
    return db._adapter.dbengine


def driver_name(db: Any) -> str:
    """The name of the DB-API module pydal connected with ("sqlite3",
    "psycopg2", "pg8000", "pymysql"...): psycopg2 takes several statements in
    one round trip."""
    return db._adapter.driver_name


def execute(db: Any, sql: str, args: list[Any]) -> None:
    """Run ``sql`` with ``args`` as ``db.executesql`` runs it (through pydal's
    execution handlers: its log and timings), without fetching a result:
    psycopg2's failed fetch after an INSERT or UPDATE resets ``rowcount``,
    which insert-or-nothing reads."""
    db._adapter.execute(sql, args)


def driver_cursor(db: Any) -> Any:
    """The DB-API cursor of this thread's connection to ``db`` (opened if there
    is none), the one ``db.executesql`` runs on: for ``rowcount``,
    ``executemany``, and the INSERT of send() without pydal's per-statement
    logging (a sixth of send()'s own time)."""
    adapter = db._adapter
    adapter.get_connection()
    return adapter.cursor


def uri_hash(db: Any) -> str:
    """pydal's hash of the database URI: it starts the name of each migration
    file, and is the same for every DAL on one database in a process (a key for
    what is done once a database, as web2py builds a DAL each request)."""
    return db._uri_hash


def forget_connection(db: Any) -> None:
    """Drop this thread's connection to ``db`` without a word to the server,
    when closing it failed too (it is gone): the next statement opens one."""
    db._adapter.set_connection(None)
