# -*- coding: utf-8 -*-
"""The SMTP transport, and what every SMTP error means for a message.

``classify()`` decides from the reply code wherever there is one; without a
code, from the kind of network error and the stage it happened at (while
opening the session nothing is about a message yet).
"""

import logging
import smtplib
import socket
import ssl

from . import pipeline
from .transport import ACCEPTED, Kind, Outcome, Transport

logger = logging.getLogger("s3outbox")

# What a network or SMTP failure may raise; anything else is a bug, logged
# with its traceback wherever it is caught.
EXPECTED = (OSError, EOFError, smtplib.SMTPException)


def _reply(code, text):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "%s %s" % (code, text) if code else str(text)


def classify(exc, stage):
    """The Outcome for an exception raised at ``stage`` ('connect' or 'send')."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _recipients_refused(exc)
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _sender_refused(exc)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        kind = Kind.TRANSIENT if 400 <= exc.smtp_code < 500 else Kind.CONFIG
        return Outcome(kind, exc.smtp_code, "authentication refused: " +
                       _reply(exc.smtp_code, exc.smtp_error))
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return Outcome(Kind.CONFIG, None, "the server does not support this: %s "
                       "(check tls, ssl and login)" % exc)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply_code(exc, stage)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return Outcome(Kind.TRANSIENT, None, "connection dropped: %s" % (
            str(exc) or "no reply"))
    if isinstance(exc, (OSError, EOFError)):  # smtplib.SMTPException is an OSError
        return _network(exc, stage)
    if stage == "connect":  # no message is involved yet: the setup is wrong
        return Outcome(Kind.CONFIG, None, "cannot open an SMTP session: %s: %s"
                       % (type(exc).__name__, exc))
    return Outcome(Kind.PERMANENT, None, "%s: %s" % (type(exc).__name__, exc))


def _recipients_refused(exc):
    """Every recipient refused: permanent only if every code is 5xx."""
    codes = [c for c, _ in exc.recipients.values()]
    kind = Kind.PERMANENT if codes and all(c >= 500 for c in codes) else Kind.TRANSIENT
    text = "; ".join("%s: %s" % (rcpt, _reply(c, m))
                     for rcpt, (c, m) in exc.recipients.items())
    return Outcome(kind, max(codes) if codes else None, "all recipients refused: " + text)


def _sender_refused(exc):
    """MAIL FROM refused: later (4xx), too big (552), or our sender (config)."""
    if 400 <= exc.smtp_code < 500:
        return Outcome(Kind.TRANSIENT, exc.smtp_code, "sender deferred: " +
                       _reply(exc.smtp_code, exc.smtp_error))
    if exc.smtp_code == 552:  # message too big for this server
        return Outcome(Kind.PERMANENT, 552, _reply(552, exc.smtp_error))
    return Outcome(Kind.CONFIG, exc.smtp_code, "sender %s refused: %s" % (
        exc.sender, _reply(exc.smtp_code, exc.smtp_error)))


def _reply_code(exc, stage):
    """Any other reply: 4xx later; 5xx to the session is config, else permanent."""
    code = exc.smtp_code
    text = _reply(code, exc.smtp_error)
    if 400 <= code < 500 or code == -1:
        return Outcome(Kind.TRANSIENT, code, text)
    if stage == "connect":
        return Outcome(Kind.CONFIG, code, "server refused the session: " + text)
    return Outcome(Kind.PERMANENT, code, text)


def _network(exc, stage):
    """An OSError (or EOF): TLS, DNS and refusals are the settings; timeouts
    and drops are temporary; anything else while connecting is the setup."""
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
    if stage == "connect":
        return Outcome(Kind.CONFIG, None, "cannot reach the server: %s" % exc)
    return Outcome(Kind.TRANSIENT, None, "network error: %s" % exc)


def _classified(exc, stage):
    """classify(), logging the traceback of an exception no network raises."""
    if not isinstance(exc, EXPECTED):
        logger.error("unexpected error in the SMTP %s stage", stage, exc_info=exc)
    return classify(exc, stage)


class SmtpTransport(Transport):
    """One SMTP connection: connect, STARTTLS and log in once, send many;
    pipelined (pipeline.py) when the server offers it."""

    def __init__(self, snapshot):
        super().__init__(snapshot)
        self.connection = None
        self.pipeline = None  # a pipeline.Pipeline when the server offers it

    def _open(self):
        s = self.snapshot
        problem = s.blocking_problem()
        if problem:
            return Outcome(Kind.CONFIG, None, problem)
        try:
            self.connection = self._connect()
            self.opened += 1
            return self._start()
        except Exception as e:
            self._close()
            return _classified(e, "connect")

    def _connect(self):
        s = self.snapshot
        host, port = s.host_port
        if s.ssl:
            return smtplib.SMTP_SSL(host, port, local_hostname=s.hostname,
                                    timeout=s.timeout, context=self._context())
        return smtplib.SMTP(host, port, local_hostname=s.hostname, timeout=s.timeout)

    def _start(self):
        """EHLO, STARTTLS and login on a new connection; None or the Outcome."""
        s, conn = self.snapshot, self.connection
        conn.ehlo()
        if s.tls and not s.ssl:
            if not conn.has_extn("starttls"):
                self._close()
                return Outcome(Kind.CONFIG, None, "tls is on but %s does not offer "
                               "STARTTLS (set tls = false, or use port 465 with "
                               "ssl = true)" % s.server)
            conn.starttls(context=self._context())
            conn.ehlo()
        if s.login:
            user, _, password = s.login.partition(":")
            conn.login(user, password)
        if pipeline.supported(conn):
            self.pipeline = pipeline.Pipeline(conn)
        return None

    def _context(self):
        return self.snapshot.ssl_context or ssl.create_default_context()

    def _send(self, sender, recipients, data, then=None):
        if self.pipeline is not None and not self.pipeline.expects(
                sender, recipients, data):
            # Another message is under way: this content would go to its
            # recipients. Never: hang up, so the server drops that one.
            logger.error("pipelining out of step: a message other than the one "
                         "under way; the session is closed")
            self.close()
            return Outcome(Kind.TRANSIENT, None, "session closed: pipelining out of step")
        try:
            if self.pipeline is not None:
                refused = self.pipeline.sendmail(sender, recipients, data, then)
            else:
                refused = self.connection.sendmail(sender, recipients, data)
        except Exception as e:
            return self._failed(e)
        if refused:
            replies = {r: _reply(c, m) for r, (c, m) in refused.items()}
            return Outcome(Kind.SENT, 250, "refused some recipients: " + "; ".join(
                "%s: %s" % item for item in replies.items()), refused=replies)
        return ACCEPTED

    def _failed(self, exc):
        """The Outcome of a failed send; the session reset, or closed."""
        outcome = _classified(exc, "send")
        if self.pipeline is not None and self.pipeline.ahead is not None:
            # The next message is under way (its envelope went out with this
            # content): nothing may come between, and a reply just came, so
            # the session is alive unless the server hung up (421).
            if self.connection.sock is None:
                self.close()
            return outcome
        if outcome.kind != Kind.TRANSIENT or self._alive():
            self._reset()
        else:
            self.close()
        return outcome

    def _alive(self):
        try:
            return self.connection.noop()[0] == 250
        except EXPECTED:
            return False

    def _reset(self):
        try:
            self.connection.rset()
        except EXPECTED:
            self.close()

    def _close(self):
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
                pass
