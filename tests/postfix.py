"""A Postfix of the test's own on a loopback port (Debian's postfix, installed
unconfigured by scripts/ci-system-deps.sh).

It runs from a config directory in a temporary folder with its own queue and
log; the system's mail setup (/etc/postfix/main.cf, any running Postfix) is
neither read nor touched. Mail to ``refused@people.net`` gets 550 and to
``later@people.net`` 450; everything else is accepted and written by a pipe,
as user nobody, to a file of its own in ``out/`` (with its From_ line), renamed
into place once whole, so a reader never sees half a message. Starting it needs root, as
Postfix's master does; ``unusable()`` says why it cannot run here.

Mail to ``dead.people.net`` is accepted and then bounced (a pipe that exits
EX_NOUSER, 5.1.1), and to ``full.people.net`` deferred (EX_TEMPFAIL, 4.x.x;
a delay warning after a few seconds): Postfix itself then mails its delivery
status notification to the envelope sender. With ``Postfix(mailbox=d)``
(a tests/dovecot.py Dovecot), mail to ``bounce.people.net`` (the bounce
address's domain) is delivered into that Dovecot by dovecot-lda.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

from helpers import free_port

POSTFIX = "/usr/sbin/postfix"

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = {dir}
maillog_file = {dir}/maillog
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix-test.localhost
mydestination =
relay_domains =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtp_dns_support_level = disabled
default_transport = filedrop
transport_maps = inline:{{
    {{ dead.people.net = dead: }},
    {{ full.people.net = full: }},
    {{ bounce.people.net = {bouncebox}: }} }}
delay_warning_time = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
queue_run_delay = 1s
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access inline:{{
    {{ refused@people.net = 550 5.1.1 no such user }},
    {{ later@people.net = 450 4.2.1 try later }} }}
"""

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
cleanup  unix n - n - 0 cleanup
qmgr     unix n - n 300 1 qmgr
rewrite  unix - - n - - trivial-rewrite
bounce   unix - - n - 0 bounce
defer    unix - - n - 0 bounce
trace    unix - - n - 0 bounce
verify   unix - - n - 1 verify
proxymap unix - - n - - proxymap
anvil    unix - - n - 1 anvil
scache   unix - - n - 1 scache
postlog  unix-dgram n - n - 1 postlogd
filedrop unix - n n - 1 pipe flags=F user=nobody argv=/bin/sh -c {{ f=$$(mktemp {dir}/out/.part.XXXXXX) && cat > $$f && mv $$f $$f.eml }}
dead     unix - n n - - pipe user=nobody argv=/bin/sh -c {{ echo "user unknown: mailbox unavailable"; exit 67 }}
full     unix - n n - - pipe user=nobody argv=/bin/sh -c {{ echo "mailbox full, try later"; exit 75 }}
retry    unix - - n - - error
bouncebox unix - n n - - pipe flags=DRhu user=nobody argv={lda}
"""


def unusable():
    """Why a Postfix cannot run here (a reason for pytest.skip), or None."""
    if not os.path.exists(POSTFIX):
        return (
            "Debian's postfix is not installed (scripts/ci-system-deps.sh "
            "installs it where apt is usable)"
        )
    if os.geteuid() != 0:
        return "Postfix's master must start as root"
    return None


class Postfix:
    """``with Postfix() as p:`` then send to ``p.server``; ``p.mbox()`` reads
    what was delivered."""

    def __init__(self, mailbox=None):
        self.dir = tempfile.mkdtemp(prefix="outbox-postfix-")
        os.chmod(self.dir, 0o755)  # the pipe runs as nobody
        self.port = free_port()
        self.server = "127.0.0.1:%d" % self.port
        for sub, mode in (("queue", 0o755), ("data", 0o755), ("out", 0o777)):
            os.mkdir(os.path.join(self.dir, sub))
            os.chmod(os.path.join(self.dir, sub), mode)
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        for name, text in (("main.cf", MAIN_CF), ("master.cf", MASTER_CF)):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(
                    text.format(
                        dir=self.dir,
                        port=self.port,
                        bouncebox="bouncebox" if mailbox else "filedrop",
                        lda=mailbox.lda_command() if mailbox else "/bin/false",
                    )
                )

    def _postfix(self, command):
        return subprocess.run(
            [POSTFIX, "-c", self.dir, command], capture_output=True, text=True, timeout=60
        )

    def __enter__(self):
        done = self._postfix("start")
        if done.returncode != 0 or not self._listening(30):
            log = self.log()
            self.__exit__()
            raise RuntimeError("postfix did not start: %s%s\n%s" % (done.stdout, done.stderr, log))
        return self

    def __exit__(self, *exc):
        self._postfix("stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def _listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return True
            except OSError:
                time.sleep(0.1)
        return False

    def _read(self, name):
        try:
            with open(os.path.join(self.dir, name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def log(self):
        return self.log_of("maillog")

    def log_of(self, name):
        """File ``name`` of its folder as text."""
        return self._read(name).decode("utf-8", "replace")

    def deliveries(self):
        """The whole delivered messages, oldest first, each as bytes with its
        From_ line (which carries the envelope sender)."""
        out = os.path.join(self.dir, "out")
        names = [n for n in os.listdir(out) if n.endswith(".eml")]
        paths = sorted((os.path.join(out, n) for n in names), key=os.path.getmtime)
        found = []
        for path in paths:
            with open(path, "rb") as f:
                found.append(f.read())
        return found

    def mbox(self):
        """The delivered messages, each as bytes (From_ line dropped)."""
        return [m.split(b"\n", 1)[1] for m in self.deliveries()]
