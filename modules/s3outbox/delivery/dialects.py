"""One store per database dialect, and ``open_store()`` that picks it.

What differs between the databases: how a claim takes rows safely while
other workers claim too, how an insert returns its id or skips a duplicate
(or counts up a rate-limit counter), how attempts are inserted in bulk, and
the SQL of the activity chart.
A database without a safe claim is refused: two workers could send the same
mail twice.
"""

import datetime
from collections.abc import Sequence

from .pydal_internals import db_engine, driver_cursor, driver_name
from .store import DAL, OutboxStore, Query, savepoint_name


class SqliteStore(OutboxStore):
    """SQLite runs one writer at a time, so the claiming UPDATE is atomic
    without row locks."""

    engine = "sqlite"
    mark = "?"
    atomic_statements = True

    def _begin_if_idle(self) -> None:
        # Outside a transaction SQLite makes the savepoint the transaction
        # and its RELEASE a commit; the caller's transaction must decide.
        if not driver_cursor(self.db).connection.in_transaction:
            self.db.executesql("BEGIN")

    def _claim(
        self, owner: str, limit: int, until: datetime.datetime, now: datetime.datetime
    ) -> None:
        self._sql(self._claim_sql() + "(" + self._pick_sql(limit) + ")", [owner, until, now])

    def _insert_ignore_sql(self, into: str) -> str:
        return "INSERT OR IGNORE INTO " + into

    def _insert_attempts(self, values: Sequence[tuple[object, ...]]) -> None:
        """SQLite runs in-process: executemany costs no round trips."""
        head, row = self._attempt_sql()
        driver_cursor(self.db).executemany(head + row, values)

    def _slot_sql(self) -> str:
        return "CAST(ROUND((julianday(attempted_on) - julianday(?)) * 86400) AS INTEGER) / ?"

    def _slot_start(self, start: datetime.datetime) -> datetime.datetime | str:
        return str(start)


class PostgresStore(OutboxStore):
    """PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` inside the UPDATE:
    concurrent claimers skip each other's rows instead of waiting."""

    engine = "postgres"

    def _insert_row(self, values: tuple[object, ...]) -> int:
        cursor = self._cursor()
        cursor.execute(self._insert_sql + " RETURNING id", values)
        return cursor.fetchone()[0]

    def _insert_alone(self, values: tuple[object, ...]) -> int:
        """The savepoint, the INSERT and its release in one round trip (one
        query text: psycopg2 sends it whole, as the simple protocol allows),
        the id from lastval(). Three round trips were half of send()'s time.
        A failed INSERT leaves the transaction in error, past its savepoint:
        rolled back to it, so the caller's transaction goes on."""
        if driver_name(self.db) != "psycopg2":
            return super()._insert_alone(values)
        name = savepoint_name()
        cursor = self._cursor()
        try:
            cursor.execute(
                "SAVEPOINT {0}; {1}; RELEASE SAVEPOINT {0}; SELECT lastval()".format(
                    name, self._insert_sql
                ),
                values,
            )
        except Exception:
            from psycopg2.extensions import TRANSACTION_STATUS_INERROR

            # Only a failure on the server has a savepoint to go back to.
            if cursor.connection.get_transaction_status() == TRANSACTION_STATUS_INERROR:
                self._back_to(name)
            raise
        return cursor.fetchone()[0]

    def _claim(
        self, owner: str, limit: int, until: datetime.datetime, now: datetime.datetime
    ) -> None:
        self._sql(
            self._claim_sql() + "(" + self._pick_sql(limit) + " FOR UPDATE SKIP LOCKED)",
            [owner, until, now],
        )

    def _insert_ignore_sql(self, into: str) -> str:
        return "INSERT INTO " + into + " ON CONFLICT DO NOTHING"

    def address_contains(self, text: str) -> Query:
        # LIKE is case-sensitive here; ILIKE, not LOWER(), keeps the index usable.
        return self.outbox.address.contains(text, case_sensitive=False)

    def _slot_sql(self) -> str:
        return "FLOOR(EXTRACT(EPOCH FROM (attempted_on - %s)) / %s)"


class MysqlStore(OutboxStore):
    """MariaDB/MySQL selects ``FOR UPDATE SKIP LOCKED`` and then updates by
    id: MariaDB refuses LIMIT inside an IN subquery."""

    engine = "mysql"
    atomic_statements = True

    def _schema(self) -> None:
        self._utf8mb4()
        super()._schema()

    def _utf8mb4(self) -> None:
        """pydal creates MySQL tables as utf8 (3 bytes), where an emoji in a
        subject, name or body turns into '?': convert ours to utf8mb4 once."""
        names = [self.tablename + s for s in ("", "_attachment", "_blob", "_attempt", "_state")]
        rows = self.db.executesql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema="
            "DATABASE() AND table_name IN (%s) AND LEFT(table_collation, 7) "
            "<> 'utf8mb4'" % ",".join(["%s"] * len(names)),
            placeholders=names,
        )
        for (name,) in rows:
            self.db.executesql(
                "ALTER TABLE %s CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % name
            )

    def _claim(
        self, owner: str, limit: int, until: datetime.datetime, now: datetime.datetime
    ) -> None:
        ids = [
            r[0]
            for r in self._sql(self._pick_sql(limit) + " FOR UPDATE SKIP LOCKED", [now], rows=True)
        ]
        if ids:
            self._sql(
                self._claim_sql() + "(%s)" % ",".join(str(int(i)) for i in ids), [owner, until]
            )

    def _insert_ignore_sql(self, into: str) -> str:
        return "INSERT IGNORE INTO " + into

    def _take_unit_sql(self, table: str) -> str:
        # Affected rows: 1 inserted, 2 updated, 0 left as it was. (An INSERT
        # IGNORE and an UPDATE deadlocked when many asked for a new counter.)
        return (
            "INSERT INTO {t} (bucket, hits, expires_on) VALUES ({m}, 1, {m}) "
            "ON DUPLICATE KEY UPDATE hits = IF(hits < {m}, hits + 1, hits)"
        ).format(t=table, m=self.mark)

    def _slot_sql(self) -> str:
        return "FLOOR(TIMESTAMPDIFF(SECOND, %s, attempted_on) / %s)"


STORES = {store.engine: store for store in (SqliteStore, PostgresStore, MysqlStore)}


class UnsupportedDatabase(ValueError):
    """The outbox cannot claim mail safely on this database."""


def open_store(db: DAL, tablename: str = "msg_outbox", migrate: bool = True) -> OutboxStore:
    """The store for ``db``'s engine; refuses an engine it has no safe claim for."""
    engine = db_engine(db)
    if engine not in STORES:
        raise UnsupportedDatabase(
            "the outbox supports SQLite, PostgreSQL and MariaDB/MySQL (pydal engines "
            "%s), not %r: it has no safe way to claim mail there, and two workers "
            "could send the same message twice" % (", ".join(sorted(STORES)), engine)
        )
    return STORES[engine](db, tablename, migrate)
