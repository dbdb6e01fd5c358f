"""Shared fixtures: databases (SQLite, PostgreSQL, MariaDB) and SMTP sinks.

Every outbox test takes ``db_uri`` and runs once per database. PostgreSQL and
MariaDB are at 127.0.0.1:5432 and :3306 on the CI machine; elsewhere a test
skips with the reason when one is unreachable, unless OUTBOX_REQUIRE_DBS=1
(set by .ci/run), where an unreachable database is a failure.
Each test gets its own table names, so runs never see each other's rows.
"""

import contextlib
import os
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (
    os.path.join(ROOT, "modules"),
    os.path.join(ROOT, "scripts"),
    os.path.join(ROOT, "tests"),
):
    if path not in sys.path:
        sys.path.insert(0, path)

from hypothesis import HealthCheck, settings  # noqa: E402
from pydal import DAL  # noqa: E402
from smtpsink import Sink, SinkController  # noqa: E402

# Property tests are not timed: on a busy CI machine a pause of the process
# past Hypothesis's 200 ms deadline per example (or its too_slow check) failed
# a test whose every example was right (DeadlineExceeded, then Flaky).
settings.register_profile("outbox", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("outbox")

DATABASES = {
    "sqlite": None,
    "postgres": os.environ.get("OUTBOX_TEST_POSTGRES", "postgres://postgres:@127.0.0.1:5432/test"),
    "mysql": os.environ.get(
        "OUTBOX_TEST_MYSQL", "mysql://root:@127.0.0.1:3306/test?set_encoding=utf8mb4"
    ),
}
REQUIRE = os.environ.get("OUTBOX_REQUIRE_DBS") == "1"
_reachable = {}


def _check(name, uri):
    if name not in _reachable:
        try:
            DAL(uri, migrate=False, folder=None, attempts=1).close()
            _reachable[name] = None
        except Exception as e:
            _reachable[name] = "%s not reachable at %s: %s" % (name, uri, e)
    return _reachable[name]


def unavailable(problem):
    """Skip with ``problem`` when there is one; fail instead under
    OUTBOX_REQUIRE_DBS=1 (CI), where everything must be there."""
    if problem:
        if REQUIRE:
            pytest.fail(problem)
        pytest.skip(problem)


def need(engine):
    """The URI of ``engine`` (postgres, mysql) when reachable; else skip or fail."""
    unavailable(_check(engine, DATABASES[engine]))
    return DATABASES[engine]


@pytest.fixture(autouse=True)
def _free_ports():
    """The ports helpers.free_port() reserved during a test stay reserved
    until its end (by then its servers listen on them)."""
    from helpers import release_ports

    yield
    release_ports()


@pytest.fixture(params=list(DATABASES))
def db_uri(request, tmp_path):
    """A database URI, once per engine; SQLite is a file in tmp_path."""
    name = request.param
    if name == "sqlite":
        return "sqlite://%s" % (tmp_path / "outbox.sqlite")
    return need(name)


@pytest.fixture
def tablename():
    """A fresh outbox table name for this test."""
    return "tob_%s" % uuid.uuid4().hex[:10]


@pytest.fixture
def make_db(db_uri, tmp_path, tablename):
    """make_db() opens a new connection (one per simulated worker); all the
    outbox tables made under ``tablename`` are dropped at the end."""
    opened = []

    def make():
        kwargs = dict(driver_args={"timeout": 30}) if db_uri.startswith("sqlite") else {}
        db = DAL(db_uri, folder=str(tmp_path), **kwargs)
        if db_uri.startswith("sqlite"):
            db.executesql("PRAGMA journal_mode=WAL")
        opened.append(db)
        return db

    yield make
    for db in opened:
        try:
            db.rollback()
        except Exception:
            pass
    cleanup = opened[0] if opened else None
    if cleanup is not None and not db_uri.startswith("sqlite"):
        for suffix in (
            "_attempt",
            "_attachment",
            "_blob",
            "_state",
            "_bounce",
            "_flowmail",
            "_flowlimit",
            "",
        ):
            try:
                cleanup.executesql("DROP TABLE IF EXISTS %s%s" % (tablename, suffix))
                cleanup.commit()
            except Exception:
                cleanup.rollback()
    for db in opened:
        try:
            db.close()
        except Exception:
            pass


@pytest.fixture
def db(make_db):
    return make_db()


@contextlib.contextmanager
def running_sink():
    """A running SMTP sink on loopback; ``sink.server`` is its host:port."""
    handler = Sink()
    with SinkController(handler) as controller:
        handler.server = controller.server_address
        yield handler


@pytest.fixture
def sink():
    with running_sink() as handler:
        yield handler


@pytest.fixture(scope="module")
def inbox():
    """One SMTP sink for a module's end-to-end tests, read through helpers.Inbox;
    ``inbox.server`` is its host:port. A module may define its own instead."""
    from helpers import Inbox

    box = Inbox()
    with SinkController(box.sink) as controller:
        box.server = controller.server_address
        yield box


@pytest.fixture
def mail(db, sink, tablename):
    """A MailS3 on ``db`` pointed at ``sink``."""
    from s3outbox import MailS3

    m = MailS3(
        db,
        server=sink.server,
        sender="Outbox <outbox@outbox.localhost>",
        tls=False,
        tablename=tablename,
    )
    m.settings.sessions = 1
    return m


def libpq_dsn(uri):
    """A pydal PostgreSQL URI as libpq (psycopg2) takes it."""
    return "postgresql://" + uri.partition("://")[2].partition("?")[0]


@contextlib.contextmanager
def fresh_postgres():
    """A new, uniquely named PostgreSQL database for a test that needs a whole
    database (other runs share the server); yields its URI, in the form
    without a password (trust authentication), and drops it afterwards."""
    import psycopg2

    need("postgres")
    name = "outbox_%s" % uuid.uuid4().hex[:12]
    admin = psycopg2.connect(libpq_dsn(DATABASES["postgres"]))
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute("CREATE DATABASE %s" % name)
        base = DATABASES["postgres"].partition("://")[2].partition("?")[0]
        login, _, place = base.rpartition("@")
        user = login.partition(":")[0]
        yield "postgres://%s@%s/%s" % (user, place.rpartition("/")[0], name)
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        admin.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def e2e_db_uri(request):
    """For the end-to-end suite: None (the app's own SQLite file), then a
    fresh PostgreSQL database for the module."""
    if request.param == "sqlite":
        yield None
        return
    with fresh_postgres() as uri:
        yield uri
