"""The bounce reader's parts without servers: the TOKEN (returnpath.py), the
report parser (dsn.py), the mailbox URL (mailboxes.py) and the settings
check of the bounce settings. Reports from real servers are in
tests/test_bounces_live.py."""

import pytest
from gluon.storage import Storage

from s3outbox.bounces import dsn, mailboxes
from s3outbox.bounces import settings as bounce_settings
from s3outbox.delivery import returnpath
from s3outbox.delivery.settings import DEFAULTS, Snapshot

SECRET = bytes(range(32))
BOUNCE = "bounces@relief-ops.org"


# ------------------------------------------------------------------- TOKEN
def test_token_names_the_row_and_cannot_be_made_without_the_key():
    tok = returnpath.token(SECRET, 42, "<a.b@relief-ops.org>")
    row_id, mac = tok.split("-")
    assert row_id == "42" and len(mac) == returnpath.MAC_LENGTH
    assert returnpath.verify(SECRET, 42, "<a.b@relief-ops.org>", mac)
    assert returnpath.verify(SECRET, 42, "<a.b@relief-ops.org>", mac.upper())
    assert not returnpath.verify(SECRET, 43, "<a.b@relief-ops.org>", mac)
    assert not returnpath.verify(SECRET, 42, "<other@relief-ops.org>", mac)
    assert not returnpath.verify(b"x" * 32, 42, "<a.b@relief-ops.org>", mac)


def test_envelope_and_pattern_round_trip():
    tok = returnpath.token(SECRET, 7, "<m@x>")
    env = returnpath.envelope(BOUNCE, tok)
    assert env == "bounces+%s@relief-ops.org" % tok
    pattern = returnpath.token_pattern(BOUNCE)
    assert pattern.findall("To: <%s>" % env.upper()) == [("7", tok.split("-")[1].upper())]
    assert pattern.findall("xbounces+%s@relief-ops.org" % tok) == []
    assert pattern.findall("bounces+%s@relief-ops.org.evil" % tok) == []


@pytest.mark.parametrize(
    "address, usable",
    [
        ("bounces@relief-ops.org", "bounces@relief-ops.org"),
        ("Bounces <bounces@relief-ops.org>", "bounces@relief-ops.org"),
        ("not an address", None),
        ("", None),
        (None, None),
        ("%s@relief-ops.org" % ("b" * 40), None),  # no room for a TOKEN in 64
    ],
)
def test_usable_bounce_address(address, usable):
    assert returnpath.usable(address) == usable


def test_the_return_path_changes_the_fingerprint_only_when_set():
    plain = Storage(DEFAULTS, server="relay:25", sender="ops@relief-ops.org")
    with_bounces = Storage(plain, bounce_address=BOUNCE)
    assert Snapshot(plain).return_path is None
    assert Snapshot(with_bounces).return_path == BOUNCE
    assert Snapshot(plain).fingerprint() != Snapshot(with_bounces).fingerprint()


# ------------------------------------------------------------------ reports
POSTFIX = b"""\
From: Mail Delivery System <MAILER-DAEMON@relay>
To: bounces+5-%s@relief-ops.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="X"

--X
Content-Type: text/plain

<ann@people.net>: user unknown

--X
Content-Type: message/delivery-status

Reporting-MTA: dns; relay
X-Postfix-Sender: rfc822; bounces+5-%s@relief-ops.org

Final-Recipient: rfc822; ann@people.net
Original-Recipient: rfc822;Ann@People.net
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <ann@people.net>: Recipient address rejected:
    User unknown in virtual mailbox table

Final-Recipient: rfc822; bob@people.net
Action: delayed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 mailbox full

Final-Recipient: rfc822; cy@people.net
Action: delivered
Status: 2.0.0

--X
Content-Type: message/rfc822

Message-ID: <orig.1@relief-ops.org>
From: ops@relief-ops.org

hello
--X--
""" % ((b"a" * 20,) * 2)


def test_an_rfc_3464_report():
    report = dsn.read(POSTFIX, returnpath.token_pattern(BOUNCE))
    assert report.standard and report.tokens == [(5, "a" * 20)]
    assert report.message_ids == ["<orig.1@relief-ops.org>"]
    ann, bob = report.failures
    assert (ann.recipient, ann.status, ann.code, ann.permanent) == (
        "ann@people.net",
        "5.1.1",
        550,
        True,
    )
    assert (
        ann.diagnostic == "smtp; 550 5.1.1 <ann@people.net>: Recipient address "
        "rejected: User unknown in virtual mailbox table"
    )
    assert (bob.recipient, bob.status, bob.permanent) == ("bob@people.net", "4.2.2", False)


QMAIL = b"""\
From: MAILER-DAEMON@mx.people.net
Subject: failure notice

Hi. This is the qmail-send program at mx.people.net.
I'm afraid I wasn't able to deliver your message to the following addresses.

<dan@people.net>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Message-ID: <orig.2@relief-ops.org>
Subject: Flood warning
"""


def test_a_non_standard_bounce_with_the_message_id():
    report = dsn.read(QMAIL, returnpath.token_pattern(BOUNCE))
    assert not report.standard and report.tokens == []
    assert report.message_ids == ["<orig.2@relief-ops.org>"]
    (f,) = report.failures
    assert (f.recipient, f.status) == ("dan@people.net", "5.1.1")
    assert "no mailbox here" in f.diagnostic


EXCHANGE = b"""\
From: postmaster@outlook.example
Subject: Undeliverable: Flood warning
Content-Type: text/plain

Delivery has failed to these recipients or groups:
eve@people.net
Remote Server returned '550 5.7.1 RESOLVER.RST.AuthRequired; authentication required'
Message-ID: <orig.3@relief-ops.org>
"""


def test_an_exchange_style_bounce():
    (f,) = dsn.read(EXCHANGE, None).failures
    assert f.status == "5.7.1" and f.recipient == "" and "authentication required" in f.diagnostic


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n",
        b"Subject: hello\r\n\r\nhi\r\n",
        b"From: MAILER-DAEMON@x\r\nSubject: failure notice\r\n\r\nno code here\r\n",
        b"From: friend@x\r\nSubject: Re: 550 reasons\r\n\r\n550 5.1.1 things\r\n",
        bytes(range(256)) * 20,
        b"Content-Type: multipart/report; boundary=\r\n\r\n--\r\n",
        b"From: MAILER-DAEMON@x\r\n" + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\n" * 2000,
    ],
)
def test_not_a_report_or_malformed_gives_none(data):
    assert dsn.read(data, returnpath.token_pattern(BOUNCE)) is None


def test_diagnostic_is_one_line_without_controls():
    data = POSTFIX.replace(
        b"Diagnostic-Code: smtp; 550", b"Diagnostic-Code: smtp; \xe2\x80\xae\x1b[31m 550"
    )
    (ann, _) = dsn.read(data, None).failures
    assert "\u202e" not in ann.diagnostic and "\x1b" not in ann.diagnostic


# ---------------------------------------------------------------- mailbox
def test_mailbox_url():
    assert mailboxes.parse("imaps://bo%40x:p%3Ass@mail.x.org/Bounces") == (
        "imaps",
        "mail.x.org",
        993,
        "bo@x",
        "p:ss",
        "Bounces",
    )
    assert mailboxes.parse("pop3://u:p@h:1100") == ("pop3", "h", 1100, "u", "p", "INBOX")
    assert mailboxes.label("imaps://u:s3cret@h/") == "imaps://u@h:993/INBOX"
    assert mailboxes.password("imaps://u:s%23cret@h/") == "s#cret"
    for bad, words in (
        ("http://u:p@h", "must start"),
        ("imaps://h", "needs a user"),
        ("imaps://u@h", "needs a user"),
        ("pop3s://u:p@h/Other", "no folders"),
        ("imaps://u:p@h:99999", "not a URL"),
    ):
        with pytest.raises(ValueError) as e:
            mailboxes.parse(bad)
        assert words in str(e.value) and "p@" not in str(e.value)
    assert "s3cret" not in mailboxes.label("nonsense://u:s3cret@h")


# --------------------------------------------------------- settings check
def _settings(**values):
    s = Storage(DEFAULTS)
    bounce_settings.apply(s, lambda key: values.get(key.partition(".")[2]))
    return s


def test_bounce_settings_check():
    assert bounce_settings.findings(_settings()) == []
    ok = _settings(bounce_address=BOUNCE, bounce_mailbox="imaps://u:p@h/", bounce_interval="60")
    assert bounce_settings.findings(ok) == [] and ok.bounce_interval == 60
    bad = _settings(
        bounce_address="nope", bounce_mailbox="http://u:secret@h", bounce_interval="soon"
    )
    found = {key: text for key, text, blocking in bounce_settings.findings(bad)}
    assert set(found) == {
        "[outbox] bounce_address",
        "[outbox] bounce_mailbox",
        "[outbox] bounce_interval",
    }
    assert bad.bounce_interval == 300 and "secret" not in repr(found)
    alone = bounce_settings.findings(_settings(bounce_address=BOUNCE))
    assert [k for k, _, _ in alone] == ["[outbox] bounce_mailbox"]
    assert "nobody reads them" in alone[0][1]
    summary = bounce_settings.summary(
        _settings(bounce_address=BOUNCE, bounce_mailbox="imaps://u:secret@h/")
    )
    assert "secret" not in summary and "imaps://u@h:993/INBOX" in summary
