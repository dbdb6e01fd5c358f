"""Every case of web2py master's own Mail tests (gluon/tests/test_tools.py,
TestMail), re-done for MailS3: each message goes through ``send()`` into the
outbox and out through ``process_outbox()`` to a real SMTP server on
loopback (aiosmtpd; TLS with a throwaway CA from trustme), where web2py's
tests swap smtplib for a stub.

The differences, also listed in docs/web2py.md: ``send()`` returns True once the
message is queued, so a refused login shows at delivery (the message is held
with the reason), not as ``send()`` returning False; example addresses
(``you@example.com``) hold mail, so these tests use other domains.
"""

import email
import email.header
import email.policy
import os
import ssl

import pytest
from gluon.languages import TranslatorFactory
from gluon.tools import Mail
from test_direct import PASSWORD, USER, authenticator, ca, client_tls, server_tls, smtp_server  # noqa: F401 (ca, client_tls, server_tls: fixtures)

from s3outbox import MailS3
from s3outbox.delivery.settings import Snapshot
from s3outbox.transport.smtp import SmtpTransport

pytestmark = pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)

TO = "somebody@people.net"


def deliver(mail, server, **kwargs):
    """send() (queued: True), one pass; return (counts, received bytes or None)."""
    mail.settings.server = server.server
    before = server.count
    assert mail.send(**kwargs) is True, mail.error
    mail.db.commit()
    counts = mail.process_outbox()
    data = server.messages[-1][2] if server.count > before else None
    return counts, data


def text(data):
    """The received message as text with LF line ends, as Mail's tests read it."""
    return data.decode("utf-8").replace("\r\n", "\n")


def parsed(data):
    return email.message_from_bytes(data)


def one(**kwargs):
    return dict(
        dict(to=[TO], subject="hello", reply_to="us@people.net", message="world"), **kwargs
    )


def only_row(mail):
    return mail.db(mail.store.outbox).select().last()


# --------------------------------------------------------------- cases
def test_hello_world(mail, sink):
    counts, data = deliver(mail, sink, **one())
    assert counts["sent"] == 1
    mail_from, rcpts, _ = sink.messages[-1]
    assert mail_from == "outbox@outbox.localhost" and rcpts == [TO]
    assert "To: %s\nReply-To: us@people.net\nSubject: hello\n" % TO in text(data)
    assert text(data).rstrip("\n").endswith("world")
    # smtplib ends the data with CRLF, for stock Mail as here
    assert parsed(data).get_payload(decode=True) == b"world\r\n"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_failed_login(mail):
    """Stock send() returns False; MailS3 queues, and delivery holds the
    message with the server's refusal (no password in it)."""
    with smtp_server(
        authenticator=authenticator([]), auth_required=True, auth_require_tls=False
    ) as server:
        mail.settings.login = "%s:wrong-password" % USER
        counts, data = deliver(mail, server, **one())
    assert counts["held"] == 1 and data is None
    row = only_row(mail)
    assert row.status == "held" and "authentication refused: 535" in row.last_error
    assert "wrong-password" not in row.last_error


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_login(mail):
    seen = []
    with smtp_server(
        authenticator=authenticator(seen), auth_required=True, auth_require_tls=False
    ) as server:
        mail.settings.login = "%s:%s" % (USER, PASSWORD)
        counts, data = deliver(mail, server, **one())
    assert counts["sent"] == 1 and data is not None
    assert [ok for _, ok, _ in seen] == [True]


def test_html(mail, sink):
    _, data = deliver(mail, sink, **one(message="<html><head></head><body></body></html>"))
    assert "Content-Type: text/html" in text(data)


def test_alternative(mail, sink):
    _, data = deliver(
        mail, sink, to=[TO], message=("Text only", "<html><pre>HTML Only</pre></html>")
    )
    msg = parsed(data)
    assert msg.is_multipart() and msg.get_content_type() == "multipart/alternative"
    first, second = msg.get_payload()
    assert "Text only" in first.as_string()
    assert "<html><pre>HTML Only</pre></html>" in second.as_string()


def test_ssl(mail, server_tls, client_tls):
    with smtp_server(ssl_context=server_tls) as server:
        mail.settings.ssl, mail.settings.ssl_context = True, client_tls
        counts, data = deliver(mail, server, **one())
    assert counts["sent"] == 1 and data is not None


def _context(mail):
    return SmtpTransport(Snapshot(mail.settings))._context()


@pytest.mark.parametrize("tls,ssl_on", [(True, False), (False, True)], ids=["starttls", "ssl"])
def test_uses_verifying_context(mail, server_tls, tls, ssl_on):
    """No ssl_context set: the certificate is checked (here signed by a CA
    the system does not trust, so the message is held, not sent)."""
    mail.settings.tls, mail.settings.ssl = tls, ssl_on
    ctx = _context(mail)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    kwargs = (
        dict(tls_context=server_tls, require_starttls=True)
        if tls
        else dict(ssl_context=server_tls)
    )
    with smtp_server(**kwargs) as server:
        counts, data = deliver(mail, server, **one())
    assert counts["held"] == 1 and data is None
    assert "CERTIFICATE_VERIFY_FAILED" in only_row(mail).last_error


@pytest.mark.parametrize("tls,ssl_on", [(True, False), (False, True)], ids=["starttls", "ssl"])
def test_self_signed_certificate_opts_out(mail, server_tls, tls, ssl_on):
    assert mail.settings.self_signed_certificate is False  # a Mail settings key
    mail.settings.tls, mail.settings.ssl = tls, ssl_on
    mail.settings.self_signed_certificate = True
    ctx = _context(mail)
    assert not ctx.check_hostname and ctx.verify_mode == ssl.CERT_NONE
    kwargs = (
        dict(tls_context=server_tls, require_starttls=True)
        if tls
        else dict(ssl_context=server_tls)
    )
    with smtp_server(**kwargs) as server:
        counts, data = deliver(mail, server, **one())
    assert counts["sent"] == 1 and data is not None


def test_given_ssl_context_is_used_as_it_is(mail, client_tls):
    mail.settings.ssl_context = client_tls
    mail.settings.self_signed_certificate = True
    assert _context(mail) is client_tls


def test_tls(mail, server_tls, client_tls):
    seen = []
    with smtp_server(
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator(seen),
        auth_required=True,
    ) as server:
        mail.settings.tls, mail.settings.ssl_context = True, client_tls
        mail.settings.login = "%s:%s" % (USER, PASSWORD)
        counts, data = deliver(mail, server, **one())
    assert counts["sent"] == 1 and data is not None
    assert [(ok, over_tls) for _, ok, over_tls in seen] == [(True, True)]


def test_attachment(mail, sink):
    here = os.path.abspath(__file__)
    with open(here, "rb") as f:
        content = f.read()
    _, data = deliver(
        mail, sink, to=[TO], subject="hello", message="world", attachments=MailS3.Attachment(here)
    )
    assert parsed(data).get_payload(1).get_payload(decode=True) == content
    with open(here) as stream:  # a stream without a file name is refused
        with pytest.raises(Exception):  # noqa: B017 (gluon's own error, whatever it is)
            MailS3.Attachment(stream)
    _, data = deliver(
        mail,
        sink,
        to=[TO],
        subject="hello",
        message="world",
        attachments=Mail.Attachment(here, content_id="trololo", content_type="tra/lala"),
    )
    assert "Content-Type: tra/lala" in text(data)
    assert "Content-Id: <trololo>" in text(data)


def test_nonascii_subject(mail, sink):
    subject = "Ünïcödé subject: äöü"
    _, data = deliver(mail, sink, to=[TO], subject=subject, message="world")
    assert "=?utf-8?" in text(data)
    decoded = email.header.decode_header(parsed(data)["Subject"])
    assert (
        "".join(
            part.decode(charset or "utf-8") if isinstance(part, bytes) else part
            for part, charset in decoded
        )
        == subject
    )


def test_nonascii_from(mail, sink):
    _, data = deliver(
        mail,
        sink,
        to=[TO],
        subject="hello",
        message="world",
        from_address="Ünïcödé Sender <you@people.net>",
    )
    assert "=?utf-8?" in text(data)
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert str(msg["From"]) == "Ünïcödé Sender <you@people.net>"


def test_nonascii_custom_header(mail, sink):
    _, data = deliver(
        mail, sink, to=[TO], subject="hello", message="world", headers={"X-Custom": "Héllo"}
    )
    assert "=?utf-8?" in text(data)


def test_lazyt_message(mail, sink):
    T = TranslatorFactory("", "en")
    _, data = deliver(
        mail,
        sink,
        to=[TO],
        subject=T("Email verification"),
        message=T("Hello, please verify your email"),
    )
    assert "Hello, please verify your email" in text(data)
    assert parsed(data)["Subject"] == "Email verification"


def test_lazyt_html_message(mail, sink):
    T = TranslatorFactory("", "en")
    _, data = deliver(
        mail,
        sink,
        to=[TO],
        subject=T("Email verification"),
        message=(None, T("<html><body>Verify your email</body></html>")),
    )
    assert "Content-Type: text/html" in text(data)


def test_lazyt_raw_message(mail, sink):
    T = TranslatorFactory("", "en")
    _, data = deliver(mail, sink, to=[TO], subject="hello", message=T("raw body text"), raw=True)
    assert "raw body text" in text(data)
