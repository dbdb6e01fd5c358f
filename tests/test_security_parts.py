"""The parts behind issue 11, on real databases: the strict Host check, the
account-mail limiter shared by several connections (as by several web
processes), redaction, and retention (scrub and purge). The end-to-end
attacks are in test_security.py."""

import datetime
import threading

import pytest

from s3outbox import MailS3
from s3outbox.accounts import retention
from s3outbox.accounts.flowlimit import FlowLimiter, client_key
from s3outbox.accounts.hostnames import LOOPBACK_NAMES, HostNames, parse
from s3outbox.delivery.dialects import open_store
from s3outbox.delivery.store import Status, utcnow

NAMES = HostNames(list(LOOPBACK_NAMES) + ["Example.NET", "www.example.net:8443"])


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:8000@evil.example",
        "localhost:1@evil.example",
        "1:1@evil.example",
        "evil.example",
        "localhost:8000/evil",
        "localhost\\evil",
        "localhost#evil",
        "localhost?x",
        "user@localhost",
        "localhost:",
        "localhost:99999",
        "localhost:²",
        "localhost:8000 ",
        " localhost",
        "[::1",
        "[::1]x",
        "[::g]:80",
        "::1",
        "[::2]:8000",
        "example.net.evil",
        "www.example.net",
        "www.example.net:8444",
        "example.net:8080",
        "1.2.3.999",
        "-a.example.net",
        "",
        "local host",
    ],
)
def test_forged_or_unlisted_hosts_are_refused(host):
    assert NAMES.match(host) is None


@pytest.mark.parametrize(
    "host, checked",
    [
        ("[::1]:8000", "[::1]:8000"),
        ("[0:0::1]:8000", "[::1]:8000"),
        ("localhost:8000", "localhost:8000"),
        ("LOCALHOST:8000", "localhost:8000"),
        ("127.0.0.1:1", "127.0.0.1:1"),
        ("example.net", "example.net"),
        ("example.net:443", "example.net:443"),
        ("www.example.net:8443", "www.example.net:8443"),
    ],
)
def test_configured_hosts_match_exactly(host, checked):
    assert NAMES.match(host) == checked


def test_configured_names_parse_strictly():
    names = HostNames(["[::1]:*", "a.example:*", "[ab]:*", "x@y", "b.example:*x"])
    assert names.names == [("[::1]", "*"), ("a.example", "*")]
    assert names.bad == ["[ab]:*", "x@y", "b.example:*x"]
    assert parse("localhost:*") is None  # a wildcard only in configuration
    assert HostNames(list(LOOPBACK_NAMES)).loopback_only()
    assert not HostNames(["localhost:*", "site.example"]).loopback_only()


def test_client_key_ignores_forwarded_for_unless_trusted():
    env = dict(remote_addr="10.0.0.5", http_x_forwarded_for="1.2.3.4, 5.6.7.8")
    assert client_key(env) == "10.0.0.5"
    assert client_key(env, trust_forwarded=True) == "5.6.7.8"
    assert (
        client_key(dict(remote_addr="2001:db8::1"))
        == client_key(dict(remote_addr="2001:db8::ffff:1"))
        == "2001:db8::/64"
    )
    assert client_key(dict(remote_addr="::ffff:10.0.0.5")) == "10.0.0.5"


# ------------------------------------------------------------- limiter
def test_limits_are_shared_between_connections(make_db, tablename):
    """Two connections (two web processes) draw on the same counters; a
    refused request changes no counter."""
    first, second = [FlowLimiter(open_store(make_db(), tablename)) for _ in range(2)]
    first.db.commit()
    now = datetime.datetime(2026, 11, 29, 10, 15)
    limits = [("address", "a@x.net", 3), ("client", "10.0.0.1", 4), ("site", "", 100)]
    results = []
    for n in range(6):
        limiter = (first, second)[n % 2]
        results.append(limiter.allow(limits, 3600, now))
        limiter.db.commit()
    assert results == [True, True, True, False, False, False]
    assert first.used("client", "10.0.0.1", 3600, now) == 3
    other = [("address", "b@x.net", 3), ("client", "10.0.0.1", 4), ("site", "", 100)]
    assert [second.allow(other, 3600, now) for _ in range(3)] == [True, False, False]
    assert second.used("address", "b@x.net", 3600, now) == 1
    second.db.commit()
    later = now + datetime.timedelta(hours=1)
    assert first.allow(limits, 3600, later)  # a new window
    first.db.commit()
    assert first.forget_expired(later) == 4  # the earlier window's counters
    assert first.used("site", "", 3600, later) == 1


def test_no_unit_is_taken_twice_under_concurrency(make_db, tablename):
    """Twelve connections ask at once for a limit of 5: exactly 5 succeed."""
    setup = FlowLimiter(open_store(make_db(), tablename))
    setup.db.commit()
    limiters = [FlowLimiter(open_store(make_db(), tablename)) for _ in range(12)]
    now = utcnow()
    start, got = threading.Barrier(len(limiters)), []

    def ask(limiter):
        start.wait()
        ok = limiter.allow([("site", "", 5)], 100000000, now)
        limiter.db.commit()
        got.append(ok)

    threads = [threading.Thread(target=ask, args=(lim,)) for lim in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(got) == [False] * 7 + [True] * 5
    assert setup.used("site", "", 100000000, now) == 5


# ----------------------------------------------------------- redaction
def test_redaction_of_keys_and_codes():
    body = (
        "Click on the link http://h/outbox/default/user/verify_email/"
        "262bffcd-30e5-4fcd-8579-c61b84cf7d7a to verify\n"
        "reset: http://h/user/reset_password?key=1795941517-6a0f1c8e-0b6e-4c43-"
        "9a43-2d5e1b3c4d5e&x=1\nhttp://h/x?a=1&key=abc;def"
    )
    out = retention.redact(body)
    assert "262bffcd" not in out and "1795941517" not in out and "abc" not in out
    assert out.count("[redacted]") == 3 and "&x=1" in out and ";def" in out
    assert (
        retention.redact("Your temporary login code is 123456", "login")
        == "Your temporary login code is [redacted]"
    )
    assert retention.redact("Order 123456 shipped") == "Order 123456 shipped"


# ----------------------------------------------------------- retention
def test_tidy_scrubs_sent_account_mail_and_purges_old_sent_mail(db, sink, tablename):
    mail = MailS3(
        db,
        server=sink.server,
        sender="Outbox <outbox@outbox.localhost>",
        tls=False,
        tablename=tablename,
    )
    mail.settings.secret_retention = 600
    mail.settings.sent_retention_days = 30
    o = mail.store.outbox
    now = datetime.datetime(2026, 11, 29, 10, 0)
    ids = {}
    for name in ("reset", "plain", "old", "fresh_reset"):
        assert mail.send(
            to="%s@x.net" % name,
            subject=name,
            message="key=1795941517-6a0f1c8e-0b6e-4c43-9a43-2d5e1b3c4d5e",
        )
        ids[name] = mail.result["id"]
    retention.mark(mail.store, ids["reset"], "request_reset_password")
    retention.mark(mail.store, ids["fresh_reset"], "request_reset_password")
    sent_on = {
        "reset": now - datetime.timedelta(minutes=11),
        "plain": now - datetime.timedelta(days=29),
        "old": now - datetime.timedelta(days=31),
        "fresh_reset": now - datetime.timedelta(minutes=9),
    }
    for name, when in sent_on.items():
        db(o.id == ids[name]).update(status=Status.SENT, sent_on=when, created_on=when)
    db.commit()
    limiter = FlowLimiter(mail.store)
    done = retention.tidy(mail, limiter, now)
    assert done == dict(scrubbed=1, forgotten=0, purged=1)

    def text(name):
        row = db(o.id == ids[name]).select(o.body).first()
        return row and mail.store.content(row)["text"]

    assert text("reset") == retention.SCRUBBED
    assert "1795941517" in text("fresh_reset") and "1795941517" in text("plain")
    assert text("old") is None
    # Not due again at once, in this process or another.
    assert retention.tidy(mail, limiter, now + datetime.timedelta(seconds=5)) is None
    retention._tidied.clear()
    assert retention.tidy(mail, limiter, now + datetime.timedelta(seconds=5)) is None
    retention._tidied.clear()
    later = now + datetime.timedelta(seconds=retention.TIDY_EVERY + 1)
    assert retention.tidy(mail, limiter, later)["scrubbed"] == 1  # fresh_reset now
    assert text("fresh_reset") == retention.SCRUBBED


def test_tidy_compares_its_times_as_times(db, sink, tablename):
    """The tidy row's times are read as times: written with a "T" (which
    sorts after " " as text) the next turn is not yet due, a purge is."""
    mail = MailS3(
        db,
        server=sink.server,
        sender="Outbox <outbox@outbox.localhost>",
        tls=False,
        tablename=tablename,
    )
    mail.settings.sent_retention_days = 30
    now = datetime.datetime(2026, 11, 29, 10, 0)
    mail.store.set_state("tidy", dict(next="2026-11-29T10:04:00", purge="2026-11-29T09:00:00"))
    db.commit()
    retention._tidied.clear()
    assert retention.tidy(mail, None, now) is None
    retention._tidied.clear()
    later = now + datetime.timedelta(minutes=5)
    assert retention.tidy(mail, None, later) == dict(scrubbed=0, forgotten=0, purged=0)
    assert mail.store.get_state("tidy") == dict(
        next=str(later + datetime.timedelta(seconds=retention.TIDY_EVERY)),
        purge=str(later + datetime.timedelta(seconds=retention.PURGE_EVERY)),
    )
    retention._tidied.clear()


# ------------------------------------------------------- settings check
def test_settings_check_warns_about_public_url_and_bad_limits(db, tablename):
    from s3outbox.admin.summary import settings_summary
    from s3outbox.delivery.check import findings
    from s3outbox.delivery.settings import apply_config

    mail = MailS3(db, tablename=tablename)
    config = {
        "smtp.server": "127.0.0.1:8025",
        "smtp.sender": "site@people.net",
        "host.names": "localhost:*, [::1]:*",
        "outbox.flow_per_client": "-5",
        "outbox.flow_global": "0",
    }
    apply_config(mail, config.get)
    keys = {f["key"]: f["problem"] for f in findings(mail.settings)}
    assert "[app] public_url" not in keys  # loopback only: a development site
    assert (
        "flow_per_client = '-5' cannot be used: expected a whole number"
        in keys["[outbox] flow_per_client"]
    )
    assert "that limit on account mail is off" in keys["[outbox] flow_global"]
    assert mail.settings.flow_per_client == 30 and mail.settings.flow_global == 0
    assert "30 a client, no limit the site" in settings_summary(mail.settings)["limits"]
    config["host.names"] = "localhost:*, outbox.people.net"
    apply_config(mail, config.get)
    keys = {f["key"]: f for f in findings(mail.settings)}
    assert "not on loopback" in keys["[app] public_url"]["problem"]
    assert not keys["[app] public_url"]["blocking"]
    config["app.public_url"] = "https://outbox.people.net"
    apply_config(mail, config.get)
    assert "[app] public_url" not in {f["key"] for f in findings(mail.settings)}


@pytest.mark.parametrize("value", [0, -1, 0.5, 10**30, True])
def test_a_number_as_host_names_is_a_name_not_a_ticket(db, tablename, value):
    """AppConfig gives "[host] names = 0" as the int 0: reading it raised
    (every page a ticket); it is a host name like any other text."""
    from s3outbox.delivery.settings import apply_config

    mail = MailS3(db, tablename=tablename)
    apply_config(mail, {"smtp.sender": "site@people.net", "host.names": value}.get)
    assert mail.settings.host_names == str(value)


@pytest.mark.parametrize(
    "url, named",
    [
        ("https://outbox.people.net", False),
        ("outbox.people.net", False),  # https:// is added
        ("http://127.0.0.1:8000/", False),
        ("https://[::1]:8443", False),
        ("https://eden.people.net/eden", False),
        ("-1", True),
        ("0.5", True),
        ("ünï", True),
        ("ftp://outbox.people.net", True),
        ("https://out box.people.net", True),
        ("https://outbox.people.net:*", True),
        ("https://outbox.people.net?x=1", True),
    ],
)
def test_a_public_url_that_makes_no_working_link_is_named(db, tablename, url, named):
    """Before, any text was taken: links in mail went to https://-1/..."""
    from s3outbox.delivery.check import findings
    from s3outbox.delivery.settings import apply_config

    mail = MailS3(db, tablename=tablename)
    apply_config(mail, {"smtp.sender": "site@people.net", "app.public_url": url}.get)
    problems = {f["key"]: f for f in findings(mail.settings)}
    assert ("[app] public_url" in problems) == named, problems
    if named:
        assert "links in mail would not open" in problems["[app] public_url"]["problem"]
        assert not problems["[app] public_url"]["blocking"]
