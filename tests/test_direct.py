"""send_direct_email(): sends now, returns True/False with a str error, and
never raises, against real SMTP servers on loopback: plain, STARTTLS,
implicit TLS and AUTH (aiosmtpd with a throwaway CA from trustme), one that
refuses, and one that accepts the connection and never answers.

The database plays no part in a direct send, so these run on SQLite only.
"""

import contextlib
import email
import io
import socket
import ssl
import threading

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword
from gluon.storage import Storage
from gluon.tools import Mail
from helpers import free_port
from smtpsink import Sink, SinkController
from test_mime import CASES, assert_equivalent

pytestmark = pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)

SENDER = "Outbox <outbox@outbox.localhost>"
USER, PASSWORD = "mailer", "s3cret-Pa55"


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_tls(ca):
    """What an admin would set as mail.settings.ssl_context: trusts our CA."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@contextlib.contextmanager
def smtp_server(**kwargs):
    """An aiosmtpd Sink on loopback with extra SMTP/Controller options."""
    handler = Sink()
    with SinkController(handler, **kwargs) as controller:
        handler.server = controller.server_address
        yield handler


def authenticator(seen):
    def check(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        seen.append((mechanism, ok, session.ssl is not None))
        return AuthResult(success=ok, handled=False)

    return check


def use(mail, server, tls=False, ssl_on=False, login=None, context=None):
    s = mail.settings
    s.server, s.tls, s.ssl, s.login, s.ssl_context = server, tls, ssl_on, login, context


def assert_failed(mail, result, *fragments):
    assert result is False
    assert isinstance(mail.error, str), mail.error
    for fragment in fragments:
        assert fragment in mail.error, mail.error


# ------------------------------------------------------------------ plain
def test_sends_now(mail, db, sink):
    assert (
        mail.send_direct_email(
            "ann@people.net", "Now", "Body", cc="cy@people.net", bcc="bo@people.net"
        )
        is True
    )
    assert mail.error is None and mail.result == {}
    assert sink.connections == 1 and sink.count == 1
    mail_from, rcpts, data = sink.messages[0]
    assert mail_from == "outbox@outbox.localhost"
    assert rcpts == ["ann@people.net", "cy@people.net", "bo@people.net"]
    msg = email.message_from_bytes(data)
    assert msg["Subject"] == "Now" and msg["Message-ID"] and msg["Bcc"] is None
    assert db(mail.store.outbox).count() == 0  # nothing goes through the outbox


@pytest.mark.parametrize(
    "case", ["non-ascii", "attachments", "recipients", "file-like-pair", "sender-from-headers"]
)
def test_same_mime_as_stock_mail(mail, db, sink, tmp_path, case):
    stock = Mail(sink.server, SENDER, tls=False)
    assert stock.send(**CASES[case](tmp_path)) is True, stock.error
    assert mail.send_direct_email(**CASES[case](tmp_path)) is True, mail.error
    theirs, ours = [(f, r, email.message_from_bytes(d)) for f, r, d in sink.messages]
    assert_equivalent(theirs, ours)


def test_long_message_with_attachment(mail, db, sink):
    body = "\n".join("line %d %s" % (n, "=" * 70) for n in range(500))
    big = Mail.Attachment(io.BytesIO(bytes(range(256)) * 400), filename="b.bin")
    assert mail.send_direct_email("ann@people.net", "Big", body, attachments=big) is True, (
        mail.error
    )
    msg = email.message_from_bytes(sink.messages[0][2])
    part = list(msg.walk())[-1]
    assert part.get_payload(decode=True) == bytes(range(256)) * 400


def test_connection_refused(mail, db):
    use(mail, "127.0.0.1:%d" % free_port())
    assert_failed(mail, mail.send_direct_email("ann@people.net", "Hi", "m"), "refused")


def test_550_at_rcpt(mail, db, sink):
    sink.script["RCPT"] = {"nobody@people.net": "550 5.1.1 no such user"}
    assert_failed(
        mail, mail.send_direct_email("nobody@people.net", "Hi", "m"), "550", "no such user"
    )
    assert sink.count == 0


def test_550_for_one_of_two_recipients(mail, db, sink):
    sink.script["RCPT"] = {"nobody@people.net": "550 5.1.1 no such user"}
    assert mail.send_direct_email(["ann@people.net", "nobody@people.net"], "Hi", "m") is True
    assert list(mail.result) == ["nobody@people.net"]
    assert "550" in mail.result["nobody@people.net"]
    assert sink.messages[0][1] == ["ann@people.net"]


def test_550_at_data(mail, db, sink):
    sink.script["DATA"] = "554 5.7.1 rejected as spam"
    assert_failed(mail, mail.send_direct_email("ann@people.net", "Hi", "m"), "554")


@pytest.mark.parametrize(
    "sender,fragment",
    [
        ("you@gmail.com", "example"),
        ("Sahana <sahana@example.org>", "example"),
        ("noreply@example.com", "example"),
        (None, "no sender"),
        ("", "no sender"),
        ("not an address", "not a valid"),
    ],
)
def test_example_or_missing_sender(mail, db, sink, sender, fragment):
    mail.settings.sender = sender
    assert_failed(mail, mail.send_direct_email("ann@people.net", "Hi", "m"), fragment)
    assert sink.connections == 0  # refused before touching the network


@pytest.mark.parametrize(
    "server,fragment",
    [
        (None, "no SMTP server"),
        ("", "no SMTP server"),
        ("gae", "not an SMTP"),
        ("smtp.example.com:port", "host:port"),
    ],
)
def test_missing_or_bad_server(mail, db, server, fragment):
    mail.settings.server = server
    assert_failed(mail, mail.send_direct_email("ann@people.net", "Hi", "m"), fragment)


def test_sender_argument_is_the_envelope_sender(mail, db, sink):
    assert mail.send_direct_email("ann@people.net", "Hi", "m", sender="desk@people.net") is True, (
        mail.error
    )
    assert sink.messages[0][0] == "desk@people.net"


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        (dict(to=None), "no recipient"),
        (dict(to="bad"), "not a valid"),
        (dict(subject="a\r\nBcc: x@y.net"), "subject"),
        (dict(message=42), "message must be text"),
        (dict(message=(None, None)), "no body"),
        (dict(headers={"X-A": "1\n"}), "header X-A"),
        (dict(cipher_type="gpg"), "cipher_type"),
        (dict(dkim=Storage(key="k", selector="s")), ""),
    ],
)
def test_bad_input_never_raises(mail, db, sink, kwargs, fragment):
    args = dict(to="ann@people.net", subject="Hi", message="m")
    args.update(kwargs)
    assert_failed(mail, mail.send_direct_email(**args), fragment)
    assert sink.count == 0


# -------------------------------------------------------------------- TLS
def test_starttls(mail, db, server_tls, client_tls):
    with smtp_server(tls_context=server_tls, require_starttls=True) as server:
        use(mail, server.server, tls=True, context=client_tls)
        assert mail.send_direct_email("ann@people.net", "Hi", "m") is True, mail.error
        assert server.count == 1


def test_starttls_is_required_by_this_server(mail, db, server_tls):
    """The server refuses mail before STARTTLS: without tls, no mail."""
    with smtp_server(tls_context=server_tls, require_starttls=True) as server:
        use(mail, server.server, tls=False)
        assert_failed(mail, mail.send_direct_email("ann@people.net", "Hi", "m"), "STARTTLS")
        assert server.count == 0


def test_starttls_untrusted_certificate(mail, db, server_tls):
    with smtp_server(tls_context=server_tls, require_starttls=True) as server:
        use(mail, server.server, tls=True, context=None)  # system CAs only
        assert_failed(
            mail,
            mail.send_direct_email("ann@people.net", "Hi", "m"),
            "TLS failed",
            "CERTIFICATE_VERIFY_FAILED",
        )
        assert server.count == 0


def test_tls_on_but_server_offers_no_starttls(mail, db, sink, client_tls):
    use(mail, sink.server, tls=True, context=client_tls)
    assert_failed(
        mail, mail.send_direct_email("ann@people.net", "Hi", "m"), "does not offer STARTTLS"
    )


def test_implicit_tls(mail, db, server_tls, client_tls):
    with smtp_server(ssl_context=server_tls) as server:
        use(mail, server.server, ssl_on=True, context=client_tls)
        assert mail.send_direct_email("ann@people.net", "Hi", "m") is True, mail.error
        assert server.count == 1


def test_implicit_tls_against_a_plain_server(mail, db, sink, client_tls):
    use(mail, sink.server, ssl_on=True, context=client_tls)
    assert_failed(mail, mail.send_direct_email("ann@people.net", "Hi", "m"), "TLS")
    assert sink.count == 0


# ------------------------------------------------------------------- AUTH
def test_login_over_starttls(mail, db, server_tls, client_tls):
    seen = []
    with smtp_server(
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator(seen),
        auth_required=True,
    ) as server:
        use(mail, server.server, tls=True, login="%s:%s" % (USER, PASSWORD), context=client_tls)
        assert mail.send_direct_email("ann@people.net", "Hi", "m") is True, mail.error
        assert server.count == 1
    assert [(ok, tls) for _, ok, tls in seen] == [(True, True)]


# aiosmtpd counts only STARTTLS as TLS for AUTH, so it warns about this setup
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_login_over_implicit_tls(mail, db, server_tls, client_tls):
    seen = []
    with smtp_server(
        ssl_context=server_tls,
        authenticator=authenticator(seen),
        auth_required=True,
        auth_require_tls=False,
    ) as server:
        use(mail, server.server, ssl_on=True, login="%s:%s" % (USER, PASSWORD), context=client_tls)
        assert mail.send_direct_email("ann@people.net", "Hi", "m") is True, mail.error
    assert [ok for _, ok, _ in seen] == [True]


def test_wrong_password(mail, db, server_tls, client_tls):
    seen = []
    with smtp_server(
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator(seen),
        auth_required=True,
    ) as server:
        use(mail, server.server, tls=True, login="%s:wrong-Secret" % USER, context=client_tls)
        assert_failed(
            mail,
            mail.send_direct_email("ann@people.net", "Hi", "m"),
            "authentication refused",
            "535",
        )
        assert "wrong-Secret" not in mail.error
        assert server.count == 0
    assert seen and not seen[0][1]


def test_login_required_but_not_configured(mail, db, server_tls, client_tls):
    with smtp_server(
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator([]),
        auth_required=True,
    ) as server:
        use(mail, server.server, tls=True, context=client_tls)
        assert_failed(mail, mail.send_direct_email("ann@people.net", "Hi", "m"), "530")
        assert server.count == 0


# ---------------------------------------------------------------- timeout
@pytest.fixture
def silent_server():
    """Accepts connections and never says a word (a stalled relay)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield "127.0.0.1:%d" % listener.getsockname()[1], held
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize("tls", [False, True])
def test_timeout_on_a_silent_server(mail, db, silent_server, tls):
    address, held = silent_server
    use(mail, address, tls=tls)
    mail.settings.timeout = 1
    assert_failed(mail, mail.send_direct_email("ann@people.net", "Hi", "m"), "timed out")
    assert len(held) == 1  # it did connect, then waited for the greeting
