"""The SMTP transport, and what every SMTP error means for a message.

``classify()`` decides from the reply code wherever there is one; without a
code, from the kind of network error and the stage it happened at (while
opening the session nothing is about a message yet).
"""

import logging
import smtplib
import socket
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import pipeline
from .base import Kind, Next, Outcome, Settings, Transport
from .pipeline import Reply

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

logger = logging.getLogger("s3outbox")

# What a network or SMTP failure may raise; anything else is a bug, logged
# with its traceback wherever it is caught.
EXPECTED = (OSError, EOFError, smtplib.SMTPException)


def _reply(code: int | None, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "%s %s" % (code, text) if code else str(text)


def classify(exc: BaseException, stage: str) -> Outcome:
    """The Outcome for an exception raised at ``stage`` ('connect' or 'send').

    Whatever stops a session from opening (greeting, EHLO, STARTTLS, login)
    is about the server or the settings, never about a message: CONFIG.
    """
    outcome = _on_the_wire(exc)
    if stage == "connect" and outcome.kind != Kind.CONFIG:
        return Outcome(
            Kind.CONFIG, outcome.code, "cannot open an SMTP session: %s" % outcome.error
        )
    return outcome


def _on_the_wire(exc: BaseException) -> Outcome:
    """The Outcome of an exception while a message is on the wire."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _recipients_refused(exc)
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _sender_refused(exc)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return Outcome(
            Kind.CONFIG,
            exc.smtp_code,
            "authentication refused: " + _reply(exc.smtp_code, exc.smtp_error),
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return Outcome(
            Kind.CONFIG,
            None,
            "the server does not support this: %s (check tls, ssl and login)" % exc,
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply_code(exc)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return Outcome(Kind.TRANSIENT, None, "connection dropped: %s" % (str(exc) or "no reply"))
    if isinstance(exc, (OSError, EOFError)):  # smtplib.SMTPException is an OSError
        return _network(exc)
    return Outcome(Kind.PERMANENT, None, "%s: %s" % (type(exc).__name__, exc))


_UNAVAILABLE = "the server is not available: "


def _unavailable(code: int, text: str) -> Outcome:
    """421, "service not available": about the server, not the message
    (unless the session answered a message already: SmtpTransport._ended)."""
    return Outcome(Kind.CONFIG, code, _UNAVAILABLE + text)


def _recipients_refused(exc: smtplib.SMTPRecipientsRefused) -> Outcome:
    """Every recipient refused: permanent only if every code is 5xx. Some
    5xx and some 4xx: the 5xx are final (``refused``) and only the others
    are tried again (``deferred``)."""
    codes = [c for c, _ in exc.recipients.values()]
    text = "; ".join("%s: %s" % (rcpt, _reply(c, m)) for rcpt, (c, m) in exc.recipients.items())
    if codes and all(c == 421 for c in codes):
        return _unavailable(421, text)
    kind = Kind.PERMANENT if codes and all(c >= 500 for c in codes) else Kind.TRANSIENT
    final, later = _split({r: (c, _reply(c, m)) for r, (c, m) in exc.recipients.items()})
    mixed = kind == Kind.TRANSIENT and final
    return Outcome(
        kind,
        max(codes) if codes else None,
        "all recipients refused: " + text,
        refused=final if mixed else None,
        deferred=later if mixed else None,
    )


def _split(refused: dict[str, tuple[int, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """({address: reply} refused for good (5xx), {address: reply} for now)
    from {address: (code, reply)}."""
    return (
        {r: why for r, (c, why) in refused.items() if c >= 500},
        {r: why for r, (c, why) in refused.items() if c < 500},
    )


def _sender_refused(exc: smtplib.SMTPSenderRefused) -> Outcome:
    """MAIL FROM refused: later (4xx), too big (552), or our sender (config)."""
    text = _reply(exc.smtp_code, exc.smtp_error)
    if exc.smtp_code == 421:
        return _unavailable(421, text)
    if 400 <= exc.smtp_code < 500:
        return Outcome(Kind.TRANSIENT, exc.smtp_code, "sender deferred: " + text)
    if exc.smtp_code == 552:  # message too big for this server
        return Outcome(Kind.PERMANENT, 552, text)
    return Outcome(Kind.CONFIG, exc.smtp_code, "sender %s refused: %s" % (exc.sender, text))


def _reply_code(exc: smtplib.SMTPResponseException) -> Outcome:
    """Any other reply: 421 is the server; other 4xx later; 5xx for good."""
    code = exc.smtp_code
    text = _reply(code, exc.smtp_error)
    if code == 421:  # "service not available, closing channel"
        return _unavailable(code, text)
    if 400 <= code < 500 or code == -1:
        return Outcome(Kind.TRANSIENT, code, text)
    return Outcome(Kind.PERMANENT, code, text)


def _network(exc: OSError | EOFError) -> Outcome:
    """An OSError (or EOF): TLS, DNS and refusals are the settings; timeouts
    and drops are temporary."""
    if isinstance(exc, ssl.SSLError):
        return Outcome(Kind.CONFIG, None, "TLS failed: %s (check tls and ssl)" % exc)
    if isinstance(exc, socket.gaierror):
        return Outcome(Kind.CONFIG, None, "server name does not resolve: %s" % exc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return Outcome(Kind.TRANSIENT, None, "timed out: %s" % (str(exc) or "no reply"))
    if isinstance(exc, ConnectionRefusedError):
        return Outcome(Kind.CONFIG, None, "connection refused: %s" % exc)
    if isinstance(exc, (ConnectionError, EOFError)):
        return Outcome(Kind.TRANSIENT, None, "connection dropped: %s" % exc)
    return Outcome(Kind.TRANSIENT, None, "network error: %s" % exc)


def _classified(exc: BaseException, stage: str) -> Outcome:
    """classify(), logging the traceback of an exception no network raises."""
    if not isinstance(exc, EXPECTED):
        logger.error("unexpected error in the SMTP %s stage", stage, exc_info=exc)
    return classify(exc, stage)


class _SMTP(smtplib.SMTP):
    """smtplib's sendmail() drops the reply to the message; keep it."""

    reply: Reply | None = None

    def data(self, msg: "ReadableBuffer | str") -> Reply:
        self.reply = super().data(msg)
        return self.reply


class _SMTP_SSL(_SMTP, smtplib.SMTP_SSL):
    pass


class SmtpTransport(Transport):
    """One SMTP connection: connect, STARTTLS and log in once, send many;
    pipelined (pipeline.py) when the server offers it."""

    def __init__(self, snapshot: Settings) -> None:
        super().__init__(snapshot)
        self.connection: _SMTP | None = None
        self.pipeline: pipeline.Pipeline | None = None  # when the server offers it
        self.answered = 0  # messages the server answered on this connection

    def _open(self) -> Outcome | None:
        s = self.snapshot
        problem = s.blocking_problem()
        if problem:
            return Outcome(Kind.CONFIG, None, problem)
        try:
            conn = self.connection = self._connect()
            self.opened += 1
            self.answered = 0
            return self._start(conn)
        except Exception as e:  # noqa: BLE001 (an Outcome, never a raise; _classified logs bugs)
            self._close()
            return _classified(e, "connect")

    def _connect(self) -> _SMTP:
        s = self.snapshot
        host, port = s.host_port
        if s.ssl:
            return _SMTP_SSL(
                host, port, local_hostname=s.hostname, timeout=s.timeout, context=self._context()
            )
        return _SMTP(host, port, local_hostname=s.hostname, timeout=s.timeout)

    def _start(self, conn: _SMTP) -> Outcome | None:
        """EHLO, STARTTLS and login on a new connection; None or the Outcome."""
        s = self.snapshot
        conn.ehlo()
        if s.tls and not s.ssl:
            if not conn.has_extn("starttls"):
                self._close()
                return Outcome(
                    Kind.CONFIG,
                    None,
                    "tls is on but %s does not offer "
                    "STARTTLS (set tls = false, or use port 465 with "
                    "ssl = true)" % s.server,
                )
            conn.starttls(context=self._context())
            conn.ehlo()
        if s.login:
            user, _, password = s.login.partition(":")
            conn.login(user, password)
        if s.pipelining and pipeline.supported(conn):
            # A content and the next envelope go in two writes: Nagle would
            # hold the second until the server acknowledged the first.
            assert conn.sock is not None  # EHLO was answered
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.pipeline = pipeline.Pipeline(conn)
        return None

    def _context(self) -> ssl.SSLContext:
        """The settings' ssl_context; else, as web2py's Mail, one that
        verifies the certificate unless self_signed_certificate is set."""
        s = self.snapshot
        if s.ssl_context is not None:
            return s.ssl_context
        context = ssl.create_default_context()
        if s.self_signed_certificate:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _probe(self, sender: str) -> Outcome | None:
        """MAIL FROM, then RSET: does the server take mail from ``sender``?"""
        try:
            conn = self._connected()
            code, text = conn.mail(sender)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, text, sender)
            conn.rset()
        except Exception as e:  # noqa: BLE001 (an Outcome, never a raise; _classified logs bugs)
            outcome = _classified(e, "send")
            if outcome.kind != Kind.CONFIG:  # a 4xx to our sender: not answering yet
                outcome = Outcome(
                    Kind.CONFIG,
                    outcome.code,
                    "the server does not take mail now: %s" % outcome.error,
                )
            return outcome
        return None

    def _send(
        self, sender: str, recipients: Sequence[str], data: bytes, then: Next | None = None
    ) -> Outcome:
        if self.pipeline is not None and not self.pipeline.expects(sender, recipients, data):
            # Another message is under way: this content would go to its
            # recipients. Never: hang up, so the server drops that one.
            logger.error(
                "pipelining out of step: a message other than the one "
                "under way; the session is closed"
            )
            self.close()
            return Outcome(Kind.TRANSIENT, None, "session closed: pipelining out of step")
        try:
            refused, code, text = self._transaction(sender, recipients, data, then)
        except Exception as e:  # noqa: BLE001 (an Outcome, never a raise; _failed logs bugs)
            return self._failed(e)
        self.answered += 1
        reply = _reply(code, text)
        left = self._rest(sender, data, refused) if refused else {}
        if left:
            final, later = _split(left)
            return Outcome(
                Kind.SENT,
                code,
                "refused some recipients: "
                + "; ".join("%s: %s" % (r, why) for r, (_, why) in left.items()),
                refused=final or None,
                reply=reply,
                deferred=later or None,
            )
        return Outcome(Kind.SENT, code, reply=reply)

    def _transaction(
        self, sender: str, recipients: Sequence[str], data: bytes, then: Next | None = None
    ) -> tuple[dict[str, Reply], int, bytes]:
        """One mail transaction: (refused {address: (code, text)}, code, text
        of the reply to the data); raises as smtplib's sendmail()."""
        if self.pipeline is not None:
            refused = self.pipeline.sendmail(sender, recipients, data, then)
            code, text = self.pipeline.reply or (250, b"")
        else:
            conn = self._connected()
            refused = conn.sendmail(sender, recipients, data)
            code, text = conn.reply or (250, b"")
        return refused, code, text

    def _rest(
        self, sender: str, data: bytes, refused: dict[str, Reply]
    ) -> dict[str, tuple[int, str]]:
        """{address: (code, reply)} refused in the end. Recipients turned away
        with 452 (too many recipients for one transaction, RFC 5321 4.5.3.1.10)
        go in the next transaction of this session, as long as each takes some."""
        out = {r: (c, _reply(c, m)) for r, (c, m) in refused.items()}
        more = [r for r, (c, _) in refused.items() if c == 452]
        while more and self.connection is not None:
            try:
                refused = self._transaction(sender, more, data)[0]
            except smtplib.SMTPRecipientsRefused as e:  # none taken: they wait
                out.update((r, (c, _reply(c, m))) for r, (c, m) in e.recipients.items())
                return out
            except Exception as e:  # noqa: BLE001 (as in _send: _failed logs bugs)
                failed = self._failed(e)
                code = 500 if failed.kind == Kind.PERMANENT else 400
                out.update((r, (failed.code or code, failed.error or "")) for r in more)
                return out
            for r in more:
                out.pop(r)
            out.update((r, (c, _reply(c, m))) for r, (c, m) in refused.items())
            more = [r for r, (c, _) in refused.items() if c == 452]
        return out

    def _failed(self, exc: BaseException) -> Outcome:
        """The Outcome of a failed send; the session reset, or closed."""
        outcome = _classified(exc, "send")
        if outcome.kind == Kind.CONFIG and outcome.code == 421 and self.answered:
            return self._ended(outcome)
        self.answered += 1
        if self.pipeline is not None and self.pipeline.ahead is not None:
            # The next message is under way (its envelope went out with this
            # content): nothing may come between, and a reply just came, so
            # the session is alive unless the server hung up (421).
            if self._connected().sock is None:
                self.close()
            return outcome
        if outcome.kind != Kind.TRANSIENT or self._alive():
            self._reset()
        else:
            self.close()
        return outcome

    def _ended(self, outcome: Outcome) -> Outcome:
        """A 421 on a session that has answered a message (taken or refused
        it): the server ends this session (a cap of messages per connection,
        as Exim's, which counts MAIL commands; an idle or long session), it
        is not unavailable. Closed, and the message is not delivered (RFC
        5321 3.8, 4.2.5): TRANSIENT, so the pool sends it on a new session."""
        n, error = self.answered, (outcome.error or "").removeprefix(_UNAVAILABLE)
        logger.info("the server ended the session after %d message(s): %s", n, error)
        self.close()
        return Outcome(
            Kind.TRANSIENT,
            421,
            "the server ended the session after %d message(s): %s" % (n, error),
        )

    def _alive(self) -> bool:
        try:
            return self._connected().noop()[0] == 250
        except EXPECTED:
            return False

    def _reset(self) -> None:
        try:
            self._connected().rset()
        except EXPECTED:
            self.close()

    def _connected(self) -> _SMTP:
        """The session's connection; smtplib's error when there is none."""
        if self.connection is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        return self.connection

    def _close(self) -> None:
        conn, self.connection = self.connection, None
        under_way, self.pipeline = self.pipeline and self.pipeline.ahead, None
        if conn is None:
            return
        try:
            if under_way:  # QUIT would be taken as its content: hang up
                raise smtplib.SMTPServerDisconnected("message under way")
            conn.quit()
        except EXPECTED:
            try:
                conn.close()
            except EXPECTED:
                pass  # the line is gone already: nothing is left to close
