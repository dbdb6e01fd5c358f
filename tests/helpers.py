"""Helpers shared by the tests (one copy each): ports, attachments, waiting,
an SMTP inbox for end-to-end tests, and settings for the transport and pool
unit tests."""

import email
import email.policy
import html
import io
import re
import socket
import threading
import time

from gluon.storage import Storage
from smtpsink import Sink

_reserved = []


def free_port():
    """A loopback port nothing listens on, reserved until the test ends.

    Released at once, the port could be taken by another process (another
    test run on the machine, any connect()) before the server the test
    starts binds it, or while a test counts on it refusing connections. So a
    socket stays bound to it with SO_REUSEADDR and never listens: connections
    to it are refused, the kernel gives the port to no other bind(0) or
    connect(), and a server that binds it with SO_REUSEADDR (web2py's Rocket,
    aiosmtpd, Postfix, Dovecot all do) still can. release_ports() (a conftest
    fixture, after each test) closes them.
    """
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    _reserved.append(s)
    return s.getsockname()[1]


def release_ports():
    """Close the sockets that reserve the ports free_port() gave."""
    while _reserved:
        _reserved.pop().close()


def attachment(name, payload):
    """A Mail.Attachment of ``payload`` bytes (2.26 cannot take bytes itself)."""
    from gluon.tools import Mail

    return Mail.Attachment(io.BytesIO(payload), filename=name)


def wait_for(predicate, timeout=60, step=0.2):
    """The first true value of ``predicate()`` within ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


FLASH_RE = re.compile(r'<div class="flash" role="status">(.*?)</div>', re.S)


class Inbox:
    """An SMTP sink that keeps every message with its envelope recipients and
    the time it arrived; ``inbox.sink`` goes to a SinkController."""

    def __init__(self):
        self.arrived = []  # (time, recipients, message)
        self.cond = threading.Condition()
        self.sink = Sink(on_message=self._got)

    def _got(self, mail_from, rcpts, data):
        with self.cond:
            msg = email.message_from_bytes(data, policy=email.policy.default)
            self.arrived.append((time.time(), rcpts, msg))
            self.cond.notify_all()

    def to(self, address):
        with self.cond:
            return [m for _, rcpts, m in self.arrived if address in rcpts]

    def _missing(self, address):
        return AssertionError(
            "no mail to %s; got %s" % (address, [(r, m["Subject"]) for _, r, m in self.arrived])
        )

    def wait(self, to, since, timeout=60):
        """(time, message): the first message to ``to`` that arrived after ``since``."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for at, rcpts, msg in self.arrived:
                    if at >= since and to in rcpts:
                        return at, msg
                if time.time() > deadline:
                    raise self._missing(to)
                self.cond.wait(0.5)

    def wait_count(self, address, count=1, timeout=60):
        """The messages to ``address`` once there are ``count`` of them."""
        found = wait_for(lambda: len(self.to(address)) >= count and self.to(address), timeout)
        if not found:
            raise self._missing(address)
        return found


def text(msg):
    """The plain-text body of a received message."""
    return msg.get_body(("plain",)).get_content()


def flash(response):
    """The flash message shown on a page, as text (None without one)."""
    m = FLASH_RE.search(response.text)
    return m and re.sub(r"\s+", " ", html.unescape(m.group(1))).strip()


def settings(**changes):
    """Mail.settings as MailS3 has them, with working values and ``changes``."""
    from s3outbox.delivery.settings import DEFAULTS

    values = dict(
        DEFAULTS,
        server="127.0.0.1:8025",
        sender="Outbox <outbox@outbox.net>",
        login=None,
        tls=False,
        ssl=False,
        hostname=None,
        dkim=None,
        cipher_type=None,
        list_unsubscribe=None,
    )
    values.update(changes)
    return Storage(values)


def snapshot(**changes):
    """A settings Snapshot (see ``settings``)."""
    from s3outbox.delivery.settings import Snapshot

    return Snapshot(settings(**changes))
