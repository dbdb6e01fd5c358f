"""A real web2py server and scheduler worker on a copy of this app, for
end-to-end tests: ``with WebApp(tmp_path, smtp="127.0.0.1:2525") as app``.

The copy gets its own private/appconfig.ini (``app.configure(section, key,
value)`` edits it while the app runs, as an admin would), its own SQLite
database unless ``db_uri`` is given (``app.query(sql)`` reads either), and its own
port. ``start()`` returns once the delivery task runs; ``WebApp.session()``
gives a browser session for ``submit()``.
"""

import configparser
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import threading
import time

import requests
import runtime
from helpers import free_port
from requests.adapters import HTTPAdapter

FORMKEY_RE = re.compile(r'name="_formkey" type="hidden" value="([^"]+)"')
FORMNAME_RE = re.compile(r'name="_formname" type="hidden" value="([^"]+)"')


class WebApp:
    # How long the server may take to answer its first page (wait_up), and
    # what it is called when it does not.
    start_timeout, page_timeout, title = 30, 2, "web2py"

    def __init__(
        self,
        folder,
        smtp,
        sender="Outbox <outbox@outbox.localhost>",
        db_uri=None,
        worker=True,
        settings=None,
    ):
        self.folder = str(folder)
        self.port = free_port()
        self.base = "http://127.0.0.1:%d/outbox" % self.port
        self.app = runtime.build(self.folder, copy=True)
        self.db_uri = db_uri or "sqlite://storage.sqlite"
        self.procs = {}
        self.logs = {}
        self.want_worker = worker
        values = {
            ("db", "uri"): self.db_uri,
            ("smtp", "server"): smtp,
            ("smtp", "sender"): sender,
            ("smtp", "tls"): "false",
            ("smtp", "ssl"): "false",
            ("scheduler", "period"): "20",
            ("scheduler", "heartbeat"): "1",
        }
        values.update(settings or {})  # {(section, key): value}
        self.configure_many(values)

    # ------------------------------------------------------------ config
    @property
    def config_path(self):
        return os.path.join(self.app, "private", "appconfig.ini")

    def configure_many(self, values):
        """Edit private/appconfig.ini: {(section, key): value}."""
        config = configparser.ConfigParser(interpolation=None)
        config.read(self.config_path)
        for (section, key), value in values.items():
            if not config.has_section(section):
                config.add_section(section)
            config.set(section, key, str(value))
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            config.write(f)
        os.replace(tmp, self.config_path)

    def configure(self, section, key, value):
        self.configure_many({(section, key): value})

    # ----------------------------------------------------------- process
    def _start(self, name, args, new_session=False):
        """``new_session``: its own process group, as under setsid or systemd."""
        log = open(os.path.join(self.folder, name + ".log"), "wb")
        self.logs[name] = log.name
        self.procs[name] = subprocess.Popen(
            [sys.executable, os.path.join(self.folder, "web2py.py"), "--no_gui"] + args,
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )

    def start(self):
        self._start("web", ["-i", "127.0.0.1", "-p", str(self.port), "-a", secrets.token_hex(8)])
        self.wait_up()
        if self.want_worker:
            self.start_worker()
            self.wait_worker()
        return self

    def start_worker(self, name="worker", new_session=False, group="s3outbox"):
        """A worker of the delivery task's group (as ./dev run starts it),
        or with ``group=None`` the plain ``-K outbox``."""
        self._start(name, ["-K", "outbox:" + group if group else "outbox"], new_session)

    def wait_worker(self, timeout=60):
        """Wait until the delivery task runs, so mail goes out within seconds.

        A new web2py worker records itself as RUNNING in its first heartbeat,
        so its first round of task assignment skips itself and the task waits
        for the next round, five heartbeats later. Asking the ticker to PICK
        (what ``queue_task(immediate=True)`` does) once it exists makes it
        assign on its next heartbeat instead.
        """
        deadline = time.time() + timeout
        poked = 0
        while time.time() < deadline:
            if self.query(
                "SELECT 1 FROM scheduler_task WHERE status='RUNNING' AND uuid LIKE 's3outbox-%'"
            ):
                return
            # Once, then again only after a few heartbeats: a worker whose
            # status reads PICK is not ACTIVE, so it cannot be assigned work.
            if time.time() - poked > 5:
                poked = (
                    time.time()
                    if self.query(
                        "UPDATE scheduler_worker SET status='PICK' WHERE is_ticker='T' "
                        "AND status='ACTIVE' RETURNING 1"
                    )
                    else 0
                )
            time.sleep(0.2)
        raise RuntimeError("the delivery task did not start:\n" + self.log("worker"))

    def stop_worker(self, name="worker"):
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        # A worker ends its delivery pass and exits on SIGTERM. The server
        # exits too, but waits for idle keep-alive connections
        # (requests.Session) to close: its work is committed, so it is not
        # worth waiting long for.
        proc.terminate()
        try:
            proc.wait(2 if name == "web" else 30)
            return
        except subprocess.TimeoutExpired:
            pass
        proc.kill()
        proc.wait()

    def wait_up(self):
        deadline = time.time() + self.start_timeout
        while time.time() < deadline:
            try:
                if requests.get(self.base + "/default/index", timeout=self.page_timeout).ok:
                    return
            except requests.RequestException:
                pass
            if self.procs["web"].poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("%s did not start:\n%s" % (self.title, self.log("web")))

    def log(self, name):
        with open(self.logs[name], "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        """Stop the server and the workers, side by side (each takes a second
        or two to shut down)."""
        stoppers = [
            threading.Thread(target=self.stop_worker, args=(name,)) for name in list(self.procs)
        ]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ----------------------------------------------------------- browsing
    @staticmethod
    def session(source=None):
        """A requests.Session that opens a new connection for each request,
        from the local address ``source`` when given (127.0.0.N: the server
        sees another client, as it would another network).

        web2py's server (Rocket) now and then resets a kept-alive connection
        when the next request arrives on it (1 run in 6 of a four-request
        script here), and waits for idle kept-alive connections when it stops.
        """
        s = requests.Session()
        s.headers["Connection"] = "close"
        if source:
            s.mount("http://", _FromAddress(source))
        return s

    def url(self, path):
        return path if path.startswith("http") else self.base + path

    def form(self, session, path):
        """GET a page with a form; return (html, hidden fields to post back)."""
        r = session.get(self.url(path), timeout=30, headers={"Connection": "close"})
        r.raise_for_status()
        key, name = FORMKEY_RE.search(r.text), FORMNAME_RE.search(r.text)
        hidden = {}
        if key:
            hidden["_formkey"] = key.group(1)
        if name:
            hidden["_formname"] = name.group(1)
        return r.text, hidden

    def submit(self, session, path, data):
        """Fill in the form at ``path`` with ``data`` and post it."""
        _, hidden = self.form(session, path)
        return session.post(
            self.url(path), data=dict(hidden, **data), timeout=30, headers={"Connection": "close"}
        )

    @property
    def db_path(self):
        """The copy's SQLite file (when no other db_uri was given)."""
        return os.path.join(self.app, "databases", "storage.sqlite")

    def query(self, sql, args=()):
        """Run one SQL statement (``?`` placeholders) on the copy's database,
        SQLite or PostgreSQL; commit and return the rows."""
        if self.db_uri.startswith("postgres"):
            import psycopg2
            from conftest import libpq_dsn

            db = psycopg2.connect(libpq_dsn(self.db_uri))
            if args:
                sql = sql.replace("%", "%%").replace("?", "%s")
            try:
                with db, db.cursor() as cur:
                    cur.execute(sql, tuple(args) or None)
                    return cur.fetchall() if cur.description else []
            finally:
                db.close()
        db = sqlite3.connect(self.db_path, timeout=30)
        try:
            with db:
                return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def outbox_cli(self, *args):
        """scripts/outbox.py in this app's environment: the CompletedProcess."""
        return subprocess.run(
            [sys.executable, "web2py.py", "--no_gui", "--no_banner", "-S", "outbox", "-M", "-R"]
            + ["applications/outbox/scripts/outbox.py", "-A", *args],
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def errors(self):
        """Tickets web2py wrote (errors/ folder): each one is a failure."""
        folder = os.path.join(self.app, "errors")
        return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


class _FromAddress(HTTPAdapter):
    """Connections from one local address."""

    def __init__(self, address):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)
