"""classify(): every branch, from the exception smtplib or the network raises
to the outcome kind, code and the words an admin reads. Whatever stops a
session from opening is CONFIG: it is never about a message."""

import logging
import smtplib
import socket
import ssl

import pytest

from s3outbox.transport.base import Kind
from s3outbox.transport.smtp import _classified, classify

CASES = [
    # (exception, stage, kind, code, words in the error)
    (
        smtplib.SMTPRecipientsRefused(
            {"a@x.net": (550, b"no such user"), "b@x.net": (553, b"bad")}
        ),
        "send",
        Kind.PERMANENT,
        553,
        "all recipients refused: a@x.net: 550 no such user",
    ),
    (
        smtplib.SMTPRecipientsRefused({"a@x.net": (550, b"no"), "b@x.net": (450, b"busy")}),
        "send",
        Kind.TRANSIENT,
        550,
        "b@x.net: 450 busy",
    ),
    (
        smtplib.SMTPSenderRefused(451, b"try later", "o@x.net"),
        "send",
        Kind.TRANSIENT,
        451,
        "sender deferred: 451 try later",
    ),
    (
        smtplib.SMTPSenderRefused(552, b"too big", "o@x.net"),
        "send",
        Kind.PERMANENT,
        552,
        "552 too big",
    ),
    (
        smtplib.SMTPSenderRefused(553, b"not yours", "o@x.net"),
        "send",
        Kind.CONFIG,
        553,
        "sender o@x.net refused: 553 not yours",
    ),
    (
        smtplib.SMTPAuthenticationError(535, b"bad credentials"),
        "connect",
        Kind.CONFIG,
        535,
        "authentication refused: 535 bad credentials",
    ),
    (
        smtplib.SMTPAuthenticationError(454, b"try later"),
        "connect",
        Kind.CONFIG,
        454,
        "authentication refused: 454",
    ),
    (
        smtplib.SMTPNotSupportedError("AUTH extension not supported"),
        "connect",
        Kind.CONFIG,
        None,
        "does not support this",
    ),
    (
        smtplib.SMTPResponseException(421, b"closing"),
        "send",
        Kind.CONFIG,
        421,
        "the server is not available: 421 closing",
    ),
    (smtplib.SMTPResponseException(450, b"busy"), "send", Kind.TRANSIENT, 450, "450 busy"),
    (
        smtplib.SMTPRecipientsRefused({"a@x.net": (421, b"closing")}),
        "send",
        Kind.CONFIG,
        421,
        "the server is not available",
    ),
    (
        smtplib.SMTPSenderRefused(421, b"closing", "o@x.net"),
        "send",
        Kind.CONFIG,
        421,
        "the server is not available: 421 closing",
    ),
    (smtplib.SMTPResponseException(-1, b"garbled"), "send", Kind.TRANSIENT, -1, "garbled"),
    (
        smtplib.SMTPResponseException(554, b"go away"),
        "connect",
        Kind.CONFIG,
        554,
        "cannot open an SMTP session: 554 go away",
    ),
    (smtplib.SMTPDataError(554, b"spam"), "send", Kind.PERMANENT, 554, "554 spam"),
    (
        smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
        "send",
        Kind.TRANSIENT,
        None,
        "connection dropped: Connection unexpectedly closed",
    ),
    (ssl.SSLError(1, "certificate verify failed"), "connect", Kind.CONFIG, None, "TLS failed"),
    (
        socket.gaierror(-2, "Name or service not known"),
        "connect",
        Kind.CONFIG,
        None,
        "does not resolve",
    ),
    (
        TimeoutError("timed out"),
        "connect",
        Kind.CONFIG,
        None,
        "cannot open an SMTP session: timed out",
    ),
    (TimeoutError("timed out"), "send", Kind.TRANSIENT, None, "timed out"),
    (TimeoutError(), "send", Kind.TRANSIENT, None, "timed out: no reply"),
    (
        ConnectionRefusedError(111, "Connection refused"),
        "connect",
        Kind.CONFIG,
        None,
        "connection refused",
    ),
    (
        ConnectionResetError(104, "reset by peer"),
        "send",
        Kind.TRANSIENT,
        None,
        "connection dropped",
    ),
    (EOFError(), "send", Kind.TRANSIENT, None, "connection dropped"),
    (
        OSError(113, "No route to host"),
        "connect",
        Kind.CONFIG,
        None,
        "cannot open an SMTP session: network error",
    ),
    (OSError(113, "No route to host"), "send", Kind.TRANSIENT, None, "network error"),
    (smtplib.SMTPException("odd"), "send", Kind.TRANSIENT, None, "network error: odd"),
    (
        ValueError("a bug"),
        "connect",
        Kind.CONFIG,
        None,
        "cannot open an SMTP session: ValueError: a bug",
    ),
    (ValueError("a bug"), "send", Kind.PERMANENT, None, "ValueError: a bug"),
]


@pytest.mark.parametrize(
    "exc, stage, kind, code, words",
    CASES,
    ids=["%s-%s" % (type(c[0]).__name__, c[1]) for c in CASES],
)
def test_classify(exc, stage, kind, code, words):
    outcome = classify(exc, stage)
    assert (outcome.kind, outcome.code) == (kind, code)
    assert words in outcome.error


def test_unexpected_exception_is_logged_with_its_traceback(caplog):
    try:
        raise KeyError("programming error")
    except KeyError as e:
        with caplog.at_level(logging.ERROR, "s3outbox"):
            outcome = _classified(e, "send")
    assert outcome.kind == Kind.PERMANENT
    (record,) = caplog.records
    assert record.exc_info and "test_unexpected" in caplog.text


def test_network_errors_are_not_logged_as_bugs(caplog):
    with caplog.at_level(logging.ERROR, "s3outbox"):
        _classified(ConnectionRefusedError(111, "refused"), "connect")
    assert not caplog.records
