"""A real Sahana Eden (the snapshot in ../shared/eden-asp/) in a temporary
web2py runtime, for end-to-end tests: ``EdenApp(folder).build()`` extracts it
into applications/eden, runs scripts/eden_install.py on it (unless
``install=False``), writes models/000_config.py and runs Eden's first run
(prepopulate default/base, on SQLite or PostgreSQL); ``start()`` runs a web2py
server, the outbox's ``-K eden:s3outbox`` worker and Eden's own ``-K eden``.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import urllib.parse

import runtime
from helpers import free_port
from webapp import WebApp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "eden-asp")
INSTALLER = os.path.join(ROOT, "scripts", "eden_install.py")


def tarball():
    """The Eden ASP snapshot, or None where this checkout has none beside it."""
    found = sorted(glob.glob(os.path.join(SHARED, "eden-asp-*.tar.gz")))
    return found[-1] if found else None


def value(output, key):
    """The value of ``key=value`` in the output of EdenApp.shell()."""
    found = re.search(r"(?m)^%s=(.*)$" % re.escape(key), output)
    if not found:
        raise RuntimeError("no %s in:\n%s" % (key, output[-2000:]))
    return found.group(1)


class EdenApp(WebApp):
    """Eden in ``folder``/applications/eden; SQLite in its databases/, or
    PostgreSQL."""

    # Eden's first page loads its whole model: slow on a first request.
    start_timeout, page_timeout, title = 120, 30, "Eden"

    def __init__(self, folder, install=True, mail=None, db_uri=None, public_url=True):
        """``db_uri``: a PostgreSQL database for Eden (postgres://user@host:port/name,
        trust authentication), else SQLite; ``public_url=False``: the
        template's config, which sets none."""
        self.folder = str(folder)
        self.port = free_port()
        self.base = "http://127.0.0.1:%d/eden" % self.port
        self.app = os.path.join(self.folder, "applications", "eden")
        self.db_uri = db_uri or "sqlite://storage.db"
        self.public_url = public_url
        self.procs, self.logs = {}, {}
        self.want_worker = True
        self.install = install
        self.mail = mail or {}  # settings.mail.* written to 000_config.py
        self.install_output = None

    # ------------------------------------------------------------- building
    def build(self):
        os.makedirs(os.path.join(self.folder, "applications"), exist_ok=True)
        shutil.copy(os.path.join(sysconfig.get_paths()["purelib"], "web2py.py"), self.folder)
        with open(os.path.join(self.folder, "VERSION"), "w") as f:
            f.write(runtime.VERSION)
        open(os.path.join(self.folder, "welcome.w2p"), "a").close()
        with tarfile.open(tarball()) as tar:
            tar.extractall(self.app)
        if self.install:
            self.install_output = self.installer()
        self.write_config()
        self.first_run()
        return self

    def installer(self, *args):
        """Run scripts/eden_install.py on this Eden; its output (raises on error)."""
        done = subprocess.run(
            [sys.executable, INSTALLER, self.app] + list(args), capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError("eden_install failed:\n%s%s" % (done.stdout, done.stderr))
        return done.stdout

    @property
    def config_path(self):
        return os.path.join(self.app, "models", "000_config.py")

    def write_config(self):
        """Eden's template config, finished, with this app's URL and mail."""
        with open(os.path.join(self.app, "modules", "templates", "000_config.py")) as f:
            text = f.read()
        text = text.replace(
            "FINISHED_EDITING_CONFIG_FILE = False", "FINISHED_EDITING_CONFIG_FILE = True"
        )
        if self.public_url:
            text += "\nsettings.base.public_url = %r\n" % ("http://127.0.0.1:%d" % self.port)
        text += '\nsettings.base.prepopulate = ["default/base"]\n'
        if self.db_uri.startswith("postgres"):
            where = urllib.parse.urlsplit(self.db_uri)
            text += "".join(
                "settings.database.%s = %r\n" % item
                for item in (
                    ("db_type", "postgres"),
                    ("host", where.hostname),
                    ("port", where.port or 5432),
                    ("database", where.path.strip("/")),
                    ("username", where.username),
                    ("password", where.password or ""),
                )
            )
        text += "settings.auth.hmac_key = %r\n" % "s3outbox-test-hmac"
        with open(self.config_path, "w") as f:
            f.write(text)
        self.configure_mail(**self.mail)

    def configure_mail(self, **values):
        """Set settings.mail.KEY = value in 000_config.py (None removes it), as
        an admin edits it, while Eden runs."""
        with open(self.config_path) as f:
            text = f.read()
        for key, value in values.items():
            text = re.sub(r"(?m)^settings\.mail\.%s = .*\n" % key, "", text)
            if value is not None:
                text += "settings.mail.%s = %r\n" % (key, value)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def first_run(self):
        """Eden's first run (tables, prepopulate) in a web2py shell."""
        return self.shell("noop", timeout=600)

    def shell(self, *args, timeout=300):
        """Run tests/eden_shell.py ARGS in Eden's model environment; its
        stdout (the lines it prints)."""
        done = subprocess.run(
            [
                sys.executable,
                os.path.join(self.folder, "web2py.py"),
                "--no_banner",
                "-S",
                "eden",
                "-M",
                "-R",
                os.path.join(ROOT, "tests", "eden_shell.py"),
                "-A",
            ]
            + [str(a) for a in args],
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode or "s3outbox-shell-ok" not in done.stdout:
            raise RuntimeError(
                "eden shell %s failed:\n%s\n%s" % (args, done.stdout[-3000:], done.stderr[-3000:])
            )
        return done.stdout

    # ------------------------------------------------------------ running
    def start(self):
        """The server, the outbox's worker ("worker", ``-K eden:s3outbox``)
        and Eden's own ("eden", ``-K eden``), as docs/eden.md says to run them."""
        WebApp.start(self)
        if self.want_worker:
            self.start_worker("eden", group=None)
        return self

    def start_worker(self, name="worker", group="s3outbox", new_session=False):
        """A worker of the outbox's group (``-K eden:s3outbox``), or with
        ``group=None`` Eden's plain ``-K eden``."""
        self._start(name, ["-K", "eden:" + group if group else "eden"], new_session)

    @property
    def db_path(self):
        return os.path.join(self.app, "databases", "storage.db")

    def schema(self):
        """{table or index name: (its table, its CREATE statement)} of the
        SQLite database, with the random defaults (uuid, s3_table name) Eden
        writes into its DDL made equal."""
        return {
            name: (
                table,
                re.sub(
                    r"DEFAULT '(urn:uuid:[0-9a-f-]+|s3dt_[a-z]+)'", "DEFAULT '(random)'", sql or ""
                ),
            )
            for name, table, sql in self.query(
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE "
                "type IN ('table', 'index') AND name NOT LIKE 'sqlite_%'"
            )
        }
