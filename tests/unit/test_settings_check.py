"""The settings check (delivery/check.py) and the settings as the admin's
pages show them (admin/summary.py): every finding, named as the admin edits
it, and no password in anything shown."""

import pytest
from gluon.storage import Storage

from s3outbox.admin.summary import edit_hint, settings_summary
from s3outbox.delivery.check import findings, scrub

SECRET = "Pa55-w0rd-XYZ"
GOOD = dict(
    server="mail.people.net:587",
    sender="Site <site@people.net>",
    login="site:" + SECRET,
    tls=True,
    ssl=False,
)


def settings(**changes):
    return Storage(dict(GOOD, **changes))


@pytest.mark.parametrize(
    "changes, key, words, blocking",
    [
        (dict(server=None), "[smtp] server", "no SMTP server", True),
        (dict(server="gae"), "[smtp] server", "not an SMTP server", True),
        (dict(server="smtp gmail com"), "[smtp] server", "not of the form host:port", True),
        (dict(server="mail.people.net:70000"), "[smtp] server", "outside 1-65535", True),
        # before: taken as a host name, and mail held as a connection error only
        (dict(server="-1"), "[smtp] server", "not of the form host:port", True),
        (dict(server="999:25"), "[smtp] server", "not of the form host:port", True),
        (dict(server="mail-.people.net"), "[smtp] server", "not of the form host:port", True),
        (dict(server="1.2.3.999"), "[smtp] server", "not of the form host:port", True),
        (dict(server=":0"), "[smtp] server", "not of the form host:port", True),
        (dict(server="host:abc"), "[smtp] server", "not of the form host:port", True),
        (dict(server="host:99999"), "[smtp] server", "outside 1-65535", True),
        (
            dict(server="smtp.gmail.com:587", login="username:password"),
            "[smtp] server",
            "web2py's example value",
            True,
        ),
        (dict(sender=""), "[smtp] sender", "no sender address", True),
        (dict(sender="site at people.net"), "[smtp] sender", "not a valid e-mail", True),
        (dict(sender="you@gmail.com"), "[smtp] sender", "unedited example", True),
        (dict(sender="Sahana <sahana@example.org>"), "[smtp] sender", "unedited example", True),
        (dict(sender="ops@mail.example.net"), "[smtp] sender", "unedited example", True),
        (dict(sender="ops@site.test"), "[smtp] sender", "unedited example", True),
        (dict(login="username:password"), "[smtp] login", "unedited example", True),
        (dict(login="site"), "[smtp] login", "user:password", True),
        (dict(login="site:"), "[smtp] login", "no password", True),
        (dict(login=":" + SECRET), "[smtp] login", "no user name", True),
        (dict(ssl=True), "[smtp] ssl", "587 expects STARTTLS", False),
        (
            dict(server="mail.people.net:25", ssl=True, tls=False),
            "[smtp] ssl",
            "port 25 is plain SMTP",
            False,
        ),
        (
            dict(server="mail.people.net:465", tls=False),
            "[smtp] ssl",
            "465 expects implicit TLS",
            False,
        ),
        (dict(tls=False), "[smtp] tls", "unencrypted", False),
    ],
)
def test_each_settings_finding(changes, key, words, blocking):
    found = findings(settings(**changes))
    mine = [f for f in found if f["key"] == key]
    assert len(mine) == 1, found
    assert words in mine[0]["problem"]
    assert mine[0]["blocking"] is blocking
    assert mine[0]["where"] == "%s in private/appconfig.ini" % key
    assert all(SECRET not in f["problem"] for f in found)


def test_good_settings_have_no_findings():
    assert findings(settings()) == []
    assert findings(settings(server="127.0.0.1:2525", login=None, tls=False)) == []
    for server in ("[::1]:2525", "mail.people.net.:587", "mx1.people.net", "localhost:587"):
        assert findings(settings(server=server, login=None)) == [], server
    assert (
        findings(
            settings(
                server="smtp.gmail.com:587",
                sender="ops@people.net",
                login="ops@people.net:" + SECRET,
            )
        )
        == []
    )


def test_summary_and_scrub_hide_the_password():
    s = settings()
    assert settings_summary(s)["login"] == "site (password set)"
    assert SECRET not in repr(settings_summary(s))
    assert scrub("535 bad login site:%s" % SECRET, s) == "535 bad login site:********"
    assert settings_summary(settings(login=None))["login"] == "(none)"


def test_scrub_masks_the_bounce_mailbox_password_too():
    """bounces/ registers its secret with the settings check (delivery/check.py)."""
    s = settings(bounce_mailbox="imaps://reports:B0unce-P4ss@imap.people.net", bounce_interval=300)
    text = scrub("login failed for reports:B0unce-P4ss; site:%s" % SECRET, s)
    assert text == "login failed for reports:********; site:********"
    assert "B0unce-P4ss" not in repr(settings_summary(s))


@pytest.mark.parametrize(
    "reason, key",
    [
        (
            "sender 'you@gmail.com' is the unedited example address (edit [smtp] sender)",
            "[smtp] sender",
        ),
        ("connection refused: [Errno 111] Connection refused", "[smtp] server"),
        ("server name does not resolve: [Errno -2] Name or service not known", "[smtp] server"),
        ("cannot reach the server: [Errno 113] No route to host", "[smtp] server"),
        ("authentication refused: 535 5.7.8 bad credentials", "[smtp] login"),
        (
            "TLS failed: [SSL: WRONG_VERSION_NUMBER] (check tls and ssl)",
            "[smtp] tls and [smtp] ssl",
        ),
        ("sender outbox@site.net refused: 553 5.7.1 not yours", "[smtp] sender"),
    ],
)
def test_hold_reason_says_what_to_edit(reason, key):
    assert edit_hint(reason) == key


def test_a_value_shows_as_written_after_an_equal_one_was_read():
    """The read cache held -0.0 equal to a 0.0 read before: the settings check
    named timeout = 0.0 for an admin who wrote -0.0 (a flaky failure of
    test_no_setting_value_stops_mail)."""
    for value in (0.0, -0.0, 0.0):
        found = {f["key"]: f["problem"] for f in findings(settings(timeout=value))}
        assert found["[outbox] timeout"].startswith("timeout = %r cannot" % value), found
