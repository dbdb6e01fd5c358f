"""The transport interface: how delivery hands messages to the world.

A transport is one session with a mail service: ``open()``, ``send()`` as
often as needed, ``close()``, in the spirit of Django's BaseEmailBackend.
None of them raises; every result is an ``Outcome`` of one ``Kind``:

- ``sent``: accepted for at least one recipient (refused and deferred ones
  are listed);
- ``config``: the settings are wrong (no server, DNS, refused connection, TLS,
  authentication, sender refused); hold the mail until they change;
- ``transient``: try again later (4xx, timeout, dropped connection);
- ``permanent``: the service refused the message for good (5xx).

Three ship here and in smtp.py: ``SmtpTransport`` (the default),
``LoggingTransport`` (web2py's ``server='logging'``, for development) and
``MemoryTransport`` (for fast tests). ``Snapshot.transport()`` picks one; a
site plugs in its own with ``mail.settings.transport`` (see docs/web2py.md, "Another transport").
"""

import dataclasses
import email
import email.header
import enum
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from ssl import SSLContext
from typing import Any, Protocol

logger = logging.getLogger("s3outbox")

# A plain address: a dot-atom of ASCII letters, digits, '_', '+' and '-' on the
# left, a dotted domain whose labels neither start nor end with a hyphen. It is
# what parseaddr() (and so smtplib.quoteaddr()) returns as it is, so it is taken
# as it is, unparsed: in the envelope here, and by delivery/message.py (whose
# ADDRESS_RE, the one check of an address, accepts it). Parsing was a tenth of a
# message's CPU; tests/unit/test_pipeline.py and test_message.py compare.
PLAIN_ADDRESS_RE = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)


class Kind(enum.StrEnum):
    """What an outcome means for the message (see the module docstring)."""

    SENT = "sent"
    CONFIG = "config"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one try: its kind, the reply code and text, the
    recipients refused for good ({address: reply}: a 5xx), those refused for
    now (``deferred``, a 4xx: tried again later, only them), and the service's
    whole final reply to an accepted message."""

    kind: Kind
    code: int | None = None
    error: str | None = None
    refused: dict[str, str] | None = None
    reply: str | None = None
    deferred: dict[str, str] | None = None


ACCEPTED = Outcome(Kind.SENT, 250)

# A message as a transport takes it: (sender, recipients, its bytes).
Envelope = tuple[str, Sequence[str], bytes]
# ``then`` of Transport.send: makes the message sent next, or None.
Next = Callable[[], Envelope | None]


class Settings(Protocol):
    """What a transport reads of the settings in force (delivery's
    ``Snapshot``, which checks them first: ``blocking_problem()``)."""

    server: str | None
    login: str | None
    tls: bool
    ssl: bool
    timeout: float
    hostname: str | None
    ssl_context: SSLContext | None
    self_signed_certificate: bool
    pipelining: bool

    @property
    def host_port(self) -> tuple[str, int]: ...

    def blocking_problem(self) -> str | None: ...


class Transport:
    """One session with a mail service, opened once and used for many messages.

    Subclasses implement ``_open``, ``_send`` and ``_close``, and count in
    ``opened`` the connections they make (for figures and tests; one that
    then fails to log in counts too); ``is_open`` is kept here.
    """

    def __init__(self, snapshot: Settings) -> None:
        self.snapshot = snapshot
        self.opened = 0
        self.is_open = False

    def open(self) -> Outcome | None:
        """Start a session; None, or the Outcome that stopped it."""
        failed = self._open()
        self.is_open = failed is None
        return failed

    def send(
        self, sender: str, recipients: Sequence[str], data: bytes, then: Next | None = None
    ) -> Outcome:
        """Hand over one message (``data``: its bytes); its Outcome.

        ``then``, when the caller knows it, is a function that makes the
        (sender, recipients, data) it sends next on this session (or None if
        that cannot be built). A transport may call it once, while this
        message is on the wire, and start on that message (SMTP pipelining
        sends its envelope after this content); the caller then sends
        exactly that next, or closes the session.
        """
        return self._send(sender, recipients, data, then)

    def close(self) -> None:
        """End the session, quietly: it may already be gone."""
        if self.is_open:
            self.is_open = False
            self._close()

    def probe(self, sender: str) -> Outcome | None:
        """Whether the service takes mail from ``sender`` now, touching no
        message: None, or the Outcome that says why not. This is how held
        mail learns that the server answers again."""
        failed = self.open()
        if failed is not None:
            return failed
        try:
            return self._probe(sender)
        finally:
            self.close()

    def _open(self) -> Outcome | None:
        raise NotImplementedError

    def _send(
        self, sender: str, recipients: Sequence[str], data: bytes, then: Next | None = None
    ) -> Outcome:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def _probe(self, sender: str) -> Outcome | None:
        return None  # a session that opens is a service that answers


class LoggingTransport(Transport):
    """web2py's ``server='logging'``: write each message to the log (or, with
    ``'logging:PATH'``, append it to the file PATH) instead of sending it.
    For development; the message counts as sent."""

    def _open(self) -> Outcome | None:
        self.opened += 1
        return None

    def _send(
        self, sender: str, recipients: Sequence[str], data: bytes, then: Next | None = None
    ) -> Outcome:
        entry = _entry(sender, recipients, data)
        path = (self.snapshot.server or "").partition(":")[2]
        if path:
            try:
                with open(path, "a", encoding="utf-8") as out:
                    out.write(entry)
            except OSError as e:  # the setting names a file we cannot write
                return Outcome(
                    Kind.CONFIG,
                    None,
                    "cannot write the mail log %s: %s (edit [smtp] server)" % (path, e),
                )
        else:
            logger.warning(entry)
        return ACCEPTED


def _entry(sender: str, recipients: Sequence[str], data: bytes) -> str:
    """The message as web2py's logging mode writes it, bodies decoded."""
    message = email.message_from_bytes(data)
    bodies = [
        payload.decode(part.get_content_charset() or "utf-8", "replace")
        for part in message.walk()
        if part.get_content_maintype() == "text"
        and not part.get_filename()
        # a text part is never multipart: decoded, its payload is bytes
        and isinstance(payload := part.get_payload(decode=True), bytes)
    ]
    subject = str(email.header.make_header(email.header.decode_header(message.get("Subject", ""))))
    line = "-" * 40
    return "email not sent\n%s\nFrom: %s\nTo: %s\nSubject: %s\n\n%s\n%s\n" % (
        line,
        sender,
        ", ".join(recipients),
        subject,
        "\n\n".join(bodies),
        line,
    )


class MemoryTransport(Transport):
    """Keeps messages in memory, for tests that need no server.

    ``sent`` (a list, shareable between sessions) receives (sender,
    recipients, data) for each accepted message. ``on_open()`` and
    ``on_send(sender, recipients, data)`` may return an Outcome to
    refuse; ``delay`` seconds pass per message, as with a far server.
    """

    def __init__(
        self,
        snapshot: Settings,
        sent: list[Envelope] | None = None,
        on_open: Callable[[], Outcome | None] | None = None,
        on_send: Callable[[str, Sequence[str], bytes], Outcome | None] | None = None,
        delay: float = 0,
    ) -> None:
        super().__init__(snapshot)
        self.sent: list[Envelope] = [] if sent is None else sent
        self.on_open, self.on_send, self.delay = on_open, on_send, delay
        self._lock = threading.Lock()

    def _open(self) -> Outcome | None:
        self.opened += 1
        return self.on_open() if self.on_open else None

    def _send(
        self, sender: str, recipients: Sequence[str], data: bytes, then: Next | None = None
    ) -> Outcome:
        if self.delay:
            time.sleep(self.delay)
        refused = self.on_send(sender, recipients, data) if self.on_send else None
        if refused is not None:
            return refused
        with self._lock:
            self.sent.append((sender, list(recipients), data))
        return ACCEPTED

    def drop(self) -> None:
        """The service hangs up, as a server closing the connection would."""
        self.is_open = False


class _Memory:
    """Makes MemoryTransports that share ``sent``."""

    def __init__(self, sent: list[Envelope], options: dict[str, Any]) -> None:
        self.sent = sent
        self.options = options

    def __call__(self, snapshot: Settings) -> MemoryTransport:
        return MemoryTransport(snapshot, self.sent, **self.options)


def memory(sent: list[Envelope] | None = None, **options: Any) -> _Memory:
    """A ``settings.transport`` that makes MemoryTransports sharing ``sent``."""
    return _Memory([] if sent is None else sent, options)
