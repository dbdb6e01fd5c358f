"""Helpers for the dashboard tests: a WebApp with users and the outbox's own
tables open from the test process, the command line, bulk rows, Chromium."""

import datetime
import json
import os
import random
import uuid

import requests
from pydal import DAL
from webapp import FORMKEY_RE, WebApp

PASSWORD = "Secret123x"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


class AdminApp(WebApp):
    """WebApp with registration verification off (so users can log in at
    once), users, the app's outbox tables open here, and the CLI."""

    def __init__(self, folder, smtp, settings=None, **kwargs):
        WebApp.__init__(self, folder, smtp, **kwargs)
        values = {("auth", "registration_requires_verification"): "false"}
        values.update(settings or {})
        self.configure_many(values)
        self._db = None

    def stop(self):
        if self._db is not None:
            self._db.close()
            self._db = None
        WebApp.stop(self)

    # ------------------------------------------------------------- users
    def register(self, email, password=PASSWORD):
        """Register ``email`` and return its logged-in session."""
        s = requests.Session()
        r = self.submit(
            s,
            "/default/user/register",
            dict(
                first_name="Test",
                last_name=email.split("@")[0],
                email=email,
                password=password,
                password_two=password,
            ),
        )
        assert r.ok and "/default/index" in r.url, r.text[:2000]
        return s

    def login(self, email, password=PASSWORD):
        s = requests.Session()
        r = self.submit(s, "/default/user/login", dict(email=email, password=password))
        assert r.ok and "/user/login" not in r.url, r.text[:2000]
        return s

    def formkey(self, session, path="/outbox/index"):
        r = session.get(self.url(path), timeout=30)
        r.raise_for_status()
        return FORMKEY_RE.search(r.text).group(1)

    def act(self, session, action, data=None, formkey=None):
        """POST a dashboard action with the session's form key (or ``formkey``)."""
        body = dict(data or {})
        body["_formkey"] = formkey if formkey is not None else self.formkey(session)
        return session.post(self.url("/outbox/" + action), data=body, timeout=60)

    # -------------------------------------------------------- the tables
    @property
    def db(self):
        """The app's database, opened from the test process."""
        if self._db is None:
            kwargs = dict(folder=os.path.join(self.app, "databases"), migrate_enabled=False)
            if self.db_uri.startswith("sqlite"):
                kwargs["driver_args"] = {"timeout": 30}
            self._db = DAL(self.db_uri, **kwargs)
        return self._db

    def mail(self, **settings):
        """A MailS3 on the app's tables (defined by the app's own models)."""
        from s3outbox import MailS3

        m = MailS3(self.db, migrate=False)
        values = dict(
            server=None,
            sender="Outbox <outbox@outbox.localhost>",
            login=None,
            tls=False,
            ssl=False,
            sessions=1,
        )
        values.update(settings)
        for key, value in values.items():
            m.settings[key] = value
        return m

    # ------------------------------------------------------ command line
    def cli(self, *args):
        """Run scripts/outbox.py in the app's environment: (exit code, output)."""
        p = self.outbox_cli(*args)
        return p.returncode, p.stdout + p.stderr


# ----------------------------------------------------------- bulk rows
STATUS_MIX = (
    ("sent", 0.90),
    ("failed", 0.05),
    ("queued", 0.03),
    ("held", 0.01),
    ("cancelled", 0.01),
)


def seed(db, tablename, count, now, days=7, seed_value=1, mix=STATUS_MIX):
    """Insert ``count`` outbox rows spread over the last ``days`` days, with an
    attempt row for each sent or failed one, in a few bulk statements.

    Returns {status: count}. Rows look like what MailS3 writes.
    """
    rnd = random.Random(seed_value)
    engine = db._adapter.dbengine
    mark = "?" if engine == "sqlite" else "%s"
    cols = (
        "message_id",
        "address",
        "contact_method",
        "status",
        "priority",
        "attempts",
        "next_attempt_on",
        "last_error",
        "last_code",
        "sent_on",
        "created_on",
        "sender",
        "subject",
        "body",
        "attachment_count",
        "byte_size",
    )
    rows, made = [], {}
    span = days * 86400
    offsets = sorted((rnd.randrange(span) for _ in range(count)), reverse=True)
    for n, back in enumerate(offsets):
        status = _pick(rnd, mix)
        made[status] = made.get(status, 0) + 1
        created = now - datetime.timedelta(seconds=back)
        to = "user%d@people%d.net" % (rnd.randrange(count // 3 + 1), n % 7)
        done = created + datetime.timedelta(seconds=rnd.randrange(1, 120))
        done = min(done, now)
        error = code = sent = None
        if status == "failed":
            code, error = 550, "all recipients refused: %s: 550 5.1.1 no such user" % to
        elif status == "held":
            error = "connection refused: [Errno 111] Connection refused"
        elif status == "sent":
            sent, code = done, 250
        subject = "Bulk message %d" % n
        body = json.dumps(
            dict(
                to=[to],
                cc=[],
                bcc=[],
                reply_to=[],
                sender=None,
                from_address=None,
                subject=subject,
                text="Hello %d" % n,
                html=None,
                headers={},
                raw=False,
            )
        )
        rows.append(
            (
                "<%s@seed.outbox>" % uuid.uuid4().hex,
                to,
                "EMAIL",
                status,
                5,
                1 if status in ("sent", "failed") else 0,
                created if status != "held" else done,
                error,
                code,
                sent,
                created,
                None,
                subject,
                body,
                0,
                600,
            )
        )
    sql = "INSERT INTO %s (%s) VALUES (%s)" % (
        tablename,
        ",".join(cols),
        ",".join([mark] * len(cols)),
    )
    last = db.executesql("SELECT COALESCE(MAX(id), 0) FROM %s" % tablename)[0][0]
    cursor = db._adapter.cursor  # open now that the connection is
    _bulk(db, cursor, sql, rows)
    db.commit()
    # one attempt per finished message, at the time it finished
    found = db.executesql(
        "SELECT id, status, COALESCE(sent_on, created_on), last_code, last_error FROM %s "
        "WHERE id > %d AND status IN ('sent', 'failed')" % (tablename, last)
    )
    attempts = [
        (rid, when, "seed#1", status, code, error) for rid, status, when, code, error in found
    ]
    sql = (
        "INSERT INTO %s_attempt (outbox_id, attempted_on, worker, outcome, code, "
        "error) VALUES (%s)" % (tablename, ",".join([mark] * 6))
    )
    _bulk(db, cursor, sql, attempts)
    db.commit()
    return made


def _pick(rnd, mix):
    x = rnd.random()
    for status, share in mix:
        if x < share:
            return status
        x -= share
    return mix[0][0]


def _bulk(db, cursor, sql, rows):
    """executemany; on PostgreSQL, psycopg2's execute_values (one statement
    per 1,000 rows rather than one round trip per row)."""
    if db._adapter.dbengine == "postgres":
        from psycopg2.extras import execute_values

        head = sql.partition(" VALUES (")[0]
        execute_values(cursor, head + " VALUES %s", rows, page_size=1000)
    else:
        cursor.executemany(sql, rows)


# -------------------------------------------------------------- Chromium
def chromium_missing():
    """Why the browser test cannot run here, or None."""
    if not os.path.exists(CHROMIUM):
        return "%s is missing (scripts/ci-system-deps.sh installs it)" % CHROMIUM
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        return "playwright is not installed: %s" % e
    return None


def artifacts_dir():
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "artifacts")
    os.makedirs(folder, exist_ok=True)
    return folder
