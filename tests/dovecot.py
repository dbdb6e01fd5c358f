"""A Dovecot of the test's own on loopback ports (Debian's dovecot-imapd and
dovecot-pop3d, installed by scripts/ci-system-deps.sh): IMAP over TLS and
POP3 over TLS, with a certificate from a throwaway CA (trustme).

It runs from a config directory in a temporary folder, with its own state,
log and Maildir (``mail/USER/Maildir``, owned by nobody, which is also the
user Postfix's pipe runs dovecot-lda as); the system's dovecot is neither
read nor touched. One user, ``bounces`` with password ``PASSWORD``.
``unusable()`` says why it cannot run here.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time

import trustme
from helpers import free_port

DOVECOT = "/usr/sbin/dovecot"
LDA = "/usr/lib/dovecot/dovecot-lda"
USER = "bounces"
PASSWORD = "p@ss/wo%rd#secret"  # characters that need percent-encoding in a URL

CONF = """\
protocols = imap pop3
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = outbox-test-{imaps}
log_path = {dir}/dovecot.log
ssl = required
ssl_cert = <{dir}/cert.pem
ssl_key = <{dir}/key.pem
auth_mechanisms = plain
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={dir}/mail/%u allow_all_users=yes
}}
mail_location = maildir:~/Maildir
pop3_uidl_format = %08Xu%08Xv
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
service auth {{
  unix_listener auth-userdb {{
    mode = 0666
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol lda {{
  log_path = /dev/stderr
}}
"""


def unusable():
    """Why a Dovecot cannot run here (a reason for pytest.skip), or None."""
    if not (
        os.path.exists(DOVECOT)
        and os.path.exists("/usr/lib/dovecot/imap")
        and os.path.exists("/usr/lib/dovecot/pop3")
    ):
        return (
            "Debian's dovecot-imapd and dovecot-pop3d are not installed "
            "(scripts/ci-system-deps.sh installs them where apt is usable)"
        )
    if os.geteuid() != 0:
        return "Dovecot's master must start as root"
    return None


class Dovecot:
    """``with Dovecot() as d:`` then read ``d.url("imaps")`` with ``d.context()``."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="outbox-dovecot-")
        os.chmod(self.dir, 0o755)
        self.imaps, self.pop3s = free_port(), free_port()
        for sub in ("run", "state", "mail"):
            os.mkdir(os.path.join(self.dir, sub))
        os.chmod(os.path.join(self.dir, "mail"), 0o777)  # dovecot-lda runs as nobody
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.cert_chain_pems[0].write_to_path(os.path.join(self.dir, "cert.pem"))
        cert.private_key_pem.write_to_path(os.path.join(self.dir, "key.pem"))
        os.chmod(os.path.join(self.dir, "key.pem"), 0o644)  # dovecot-lda reads the config
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            f.write("%s:{PLAIN}%s\n" % (USER, PASSWORD))
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(dir=self.dir, imaps=self.imaps, pop3s=self.pop3s))

    def __enter__(self):
        # Its daemons keep standard output open: a file, not a pipe.
        with open(os.path.join(self.dir, "start.out"), "w+") as out:
            done = subprocess.run(
                [DOVECOT, "-c", self.conf],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                timeout=60,
            )
            out.seek(0)
            said = out.read()
        if done.returncode != 0 or not self._listening(30):
            log = self.log()
            self.__exit__()
            raise RuntimeError("dovecot did not start: %s\n%s" % (said, log))
        return self

    def __exit__(self, *exc):
        subprocess.run(
            [DOVECOT, "-c", self.conf, "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        shutil.rmtree(self.dir, ignore_errors=True)

    def _listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                for port in (self.imaps, self.pop3s):
                    socket.create_connection(("127.0.0.1", port), 1).close()
                return True
            except OSError:
                time.sleep(0.1)
        return False

    def log(self):
        try:
            with open(
                os.path.join(self.dir, "dovecot.log"), encoding="utf-8", errors="replace"
            ) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def url(self, scheme="imaps", password=PASSWORD, port=None):
        """The bounce_mailbox URL, user and password percent-encoded."""
        from urllib.parse import quote

        port = port or (self.imaps if scheme == "imaps" else self.pop3s)
        return "%s://%s:%s@127.0.0.1:%d/" % (scheme, USER, quote(password, safe=""), port)

    def context(self):
        """An SSLContext that trusts this Dovecot's certificate."""
        import ssl

        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def lda_command(self):
        """What a Postfix pipe runs to deliver into the mailbox."""
        return "%s -c %s -d %s -f ${sender}" % (LDA, self.conf, USER)

    def maildir_count(self):
        """Messages in the Maildir now (new and cur)."""
        base = os.path.join(self.dir, "mail", USER, "Maildir")
        return sum(
            len(os.listdir(os.path.join(base, sub)))
            for sub in ("new", "cur")
            if os.path.isdir(os.path.join(base, sub))
        )

    @contextlib.contextmanager
    def imap(self):
        """A logged-in IMAP connection to the mailbox, logged out after."""
        import imaplib

        conn = imaplib.IMAP4_SSL("127.0.0.1", self.imaps, ssl_context=self.context())
        try:
            conn.login(USER, PASSWORD)
            yield conn
        finally:
            conn.logout()

    def append(self, messages):
        """Put raw messages (bytes) into the mailbox over IMAP (APPEND)."""
        with self.imap() as conn:
            for data in messages:
                typ, _ = conn.append("INBOX", None, None, data)
                assert typ == "OK", typ

    def clear(self):
        """Delete every message of the mailbox."""
        with self.imap() as conn:
            if int(conn.select("INBOX")[1][0]):
                conn.store("1:*", "+FLAGS", "(\\Deleted)")
                conn.expunge()

    def count(self):
        """Messages in the mailbox, as IMAP sees them."""
        with self.imap() as conn:
            typ, data = conn.select("INBOX", readonly=True)
            return int(data[0])
