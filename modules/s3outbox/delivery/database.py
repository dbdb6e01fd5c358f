"""Opening a database that several hosts and the web2py scheduler share.

- ``AdoptingMigrator`` never creates a table that exists already. A second host
  runs its own copy of the app, whose ``databases/`` folder has no migration
  files: plain pydal would send CREATE TABLE for every table the first host
  made, and die on "relation ... already exists". Such a table is adopted
  instead (pydal's fake_migrate writes the migration file from the
  definition); tables that do not exist are created as usual.
- ``shared_uri`` gives the URI in the form that the scheduler's own second
  connection can open too (see there).

Imports only pydal.
"""

import os

from pydal.migrator import Migrator

from .pydal_internals import uri_hash
from .store import Table

# Tables in the current database/schema, one query per engine.
_CATALOG = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type='table'",
    "postgres": "SELECT tablename FROM pg_tables WHERE schemaname=current_schema()",
    "mysql": "SELECT table_name FROM information_schema.tables WHERE table_schema=DATABASE()",
}


def shared_uri(uri: str) -> str:
    """``uri`` with an empty password where it has none.

    The scheduler's heartbeat opens a second connection with
    ``decode_credentials=True`` (open the app's DAL so too, and both read a
    percent-encoded password alike), where pydal unquotes the password: a
    URI without one (``postgres://outbox@host/db``, the usual form with trust
    or peer authentication) fails there with "argument of type 'NoneType' is
    not iterable". An empty password logs in the same way and decodes.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.startswith("sqlite"):
        return uri
    login, at, place = rest.rpartition("@")
    if at and ":" not in login:
        return "%s://%s:@%s" % (scheme, login, place)
    return uri


class AdoptingMigrator(Migrator):
    """pydal's migrator, except that a table this app copy has no migration
    file for, but the database has, is adopted (fake_migrate) instead of
    created. Use: ``DAL(uri, adapter_args=dict(migrator=AdoptingMigrator))``.
    """

    def create_table(
        self,
        table: Table,
        migrate: bool | str = True,
        fake_migrate: bool = False,
        polymodel: Table | None = None,
    ) -> str:
        if migrate is True and not fake_migrate and self._exists_unmigrated(table):
            fake_migrate = True
        return Migrator.create_table(
            self, table, migrate=migrate, fake_migrate=fake_migrate, polymodel=polymodel
        )

    def _exists_unmigrated(self, table: Table) -> bool:
        uri = self.adapter.uri
        if uri == "None" or uri.startswith(("sqlite:memory", "spatialite:memory")):
            return False
        # Where pydal's create_table keeps the migration file.
        folder = (
            uri[9 : uri.rfind("/")]
            if uri.startswith(("sqlite:///", "spatialite:///"))
            else self.adapter.folder
        )
        if not folder:
            return False
        name = "%s_%s.table" % (uri_hash(self.db), str(table))
        if self.file_exists(os.path.join(folder, name)):
            return False
        return str(table).lower() in self._tables_in_database()

    def _tables_in_database(self) -> set[str]:
        found = getattr(self, "_existing_tables", None)
        if found is None:
            sql = _CATALOG.get(self.adapter.dbengine)
            found = {r[0].lower() for r in self.db.executesql(sql)} if sql else set()
            self._existing_tables = found
        return found
