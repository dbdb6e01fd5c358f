"""private/appconfig.ini as an admin writes it, read by the real web2py
server: text that is not ASCII, a '%' in a value, and nonsense in the
[scheduler] keys the app's models read themselves. Each is used or named;
none gives a page a ticket."""

import email
import email.policy
import html

import pytest
from admin_support import AdminApp
from helpers import flash, wait_for

ADMIN = "boss@people.net"


@pytest.fixture
def site(tmp_path, sink):
    app = AdminApp(tmp_path / "rt", smtp=sink.server, worker=False)
    with app:
        admin = app.register(ADMIN)
        yield app, admin
        assert not app.errors(), app.errors()


def test_an_accent_and_a_percent_are_read_as_written(site, sink):
    """web2py's server runs in the C locale: AppConfig read the file as
    ASCII, and took a lone '%' for interpolation; either gave every page a
    ticket."""
    app, admin = site
    app.configure_many(
        {
            ("smtp", "sender"): "Société Outbox <outbox@outbox.localhost>",
            ("app", "name"): "100% Outbox",
        }
    )
    r = admin.get(app.url("/outbox/index"))
    assert r.status_code == 200, r.text[:2000]
    page = html.unescape(r.text)
    assert "Société Outbox" in page and "<title>100% Outbox</title>" in page
    r = app.act(admin, "test", dict(to="ann@people.net"))
    assert flash(r).startswith("Test mail sent."), flash(r)
    assert wait_for(lambda: sink.messages)
    message = email.message_from_bytes(sink.messages[-1][2], policy=email.policy.default)
    assert str(message["From"]) == "Société Outbox <outbox@outbox.localhost>"
    assert "100% Outbox" in message["Subject"]
    app.configure("app", "name", "50%% off")  # as written for gluon's AppConfig
    assert "<title>50% off</title>" in admin.get(app.url("/outbox/index")).text


@pytest.mark.parametrize(
    "key, value",
    [
        ("tasks", "abc"),
        ("tasks", "1" + "0" * 30),  # before: every page built a list that long
        ("tasks", "0"),
        ("period", "-1"),
        ("period", "0.5"),
        ("heartbeat", "０"),
        ("heartbeat", "9" * 5000),
    ],
)
def test_nonsense_in_scheduler_keys_is_named(site, key, value):
    app, admin = site
    app.configure("scheduler", key, value)
    r = admin.get(app.url("/outbox/index"))
    assert r.status_code == 200, r.text[:2000]
    assert "<code>[scheduler] %s</code>" % key in r.text, r.text
    assert "cannot be used: expected a whole number" in r.text
    assert "mail settings: %s = " % key in app.log("web")
    assert app.query("SELECT COUNT(*) FROM scheduler_task")[0][0] == 1
