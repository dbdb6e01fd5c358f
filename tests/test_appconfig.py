"""private/appconfig.ini as an admin writes it, read by the real web2py
server: text that is not ASCII, a '%' in a value, and nonsense in the
[scheduler] keys the app's models read themselves. Each is used or named;
none gives a page a ticket."""

import email
import email.policy
import html
import os

import pytest
import requests
from admin_support import AdminApp
from conftest import fresh_postgres
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


def test_an_app_name_with_a_comma_is_text(site, sink):
    """AppConfig's get made 'Outbox, Inc.' a map: the title and the test
    mail's subject showed '<map object at 0x...>'."""
    app, admin = site
    app.configure("app", "name", "Outbox, Inc.")
    assert "<title>Outbox, Inc.</title>" in admin.get(app.url("/outbox/index")).text
    r = app.act(admin, "test", dict(to="ann@people.net"))
    assert flash(r).startswith("Test mail sent."), flash(r)
    assert wait_for(lambda: sink.messages)
    message = email.message_from_bytes(sink.messages[-1][2], policy=email.policy.default)
    assert "Outbox, Inc." in message["Subject"], message["Subject"]


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


def test_an_smtp_server_that_names_no_host_is_named(site):
    """'-1' was taken as a host name: mail was held with a connection error
    and the settings check said nothing."""
    app, admin = site
    app.configure("smtp", "server", "-1")
    r = admin.get(app.url("/outbox/index"))
    assert r.status_code == 200, r.text[:2000]
    assert "server &#x27;-1&#x27; is not of the form host:port" in r.text, r.text
    assert "mail settings: server '-1' is not of the form host:port" in app.log("web")


@pytest.mark.parametrize("value", ["abc", "-1", "1" + "0" * 30, "2.5"])
def test_nonsense_db_pool_size_on_postgres_is_named(tmp_path, sink, value):
    """pydal compares pool_size as a number when a request gives its
    connection back: 'abc' gave every page on PostgreSQL a ticket."""
    with fresh_postgres() as uri:
        app = AdminApp(tmp_path / "rt", smtp=sink.server, worker=False, db_uri=uri)
        app.configure("db", "pool_size", value)
        with app:
            admin = app.register(ADMIN)
            for _ in range(3):
                r = admin.get(app.url("/outbox/index"), timeout=30)
                assert r.status_code == 200, r.text[:2000]
            assert "<code>[db] pool_size</code>" in r.text, r.text
            assert "expected a whole number from 0 to 1000; 5 is used" in r.text
            assert "mail settings: pool_size = " in app.log("web")
            r = app.act(admin, "test", dict(to="ann@people.net"))
            assert flash(r).startswith("Test mail sent."), flash(r)
            assert not app.errors(), app.errors()


@pytest.mark.parametrize(
    "key, value, then",
    [
        ("migrate", "nope", "true is used"),
        ("use_username", "maybe", "false is used"),
        ("registration_requires_approval", "no way", "true is used (new accounts wait"),
        ("two_factor", "nope", "true is used (a code at each login)"),
    ],
)
def test_nonsense_in_flags_the_models_read_is_named(site, key, value, then):
    """Before, any text but 'false' turned these on ('no' included), unnamed."""
    app, admin = site
    section = "db" if key == "migrate" else "auth"
    app.configure(section, key, value)
    r = admin.get(app.url("/outbox/index"))
    assert r.status_code == 200, r.text[:2000]
    assert "<code>[%s] %s</code>" % (section, key) in r.text, r.text
    assert "expected true or false; " + then in html.unescape(r.text)
    assert "mail settings: %s = %s cannot be used" % (key, value) in app.log("web")


def test_nonsense_first_user_admin_makes_no_one_admin(tmp_path, sink):
    """'abc' was read as true: the first user to register became admin."""
    app = AdminApp(
        tmp_path / "rt",
        smtp=sink.server,
        worker=False,
        settings={("app", "first_user_admin"): "abc"},
    )
    with app:
        first = app.register(ADMIN)
        admins = (
            "SELECT COUNT(*) FROM auth_membership m JOIN auth_group g ON g.id=m.group_id "
            "WHERE g.role='admin'"
        )
        assert app.query(admins)[0][0] == 0
        r = first.get(app.url("/outbox/index"))
        assert "Settings check" not in r.text
        assert "mail settings: first_user_admin = abc cannot be used" in app.log("web")
        assert "no user is made admin by it" in app.log("web")
        assert app.cli("make-admin", ADMIN)[0] == 0
        assert app.query(admins)[0][0] == 1
        r = first.get(app.url("/outbox/index"))
        assert "<code>[app] first_user_admin</code>" in r.text, r.text
        assert not app.errors(), app.errors()


def _append(app, text):
    with open(app.config_path, "a") as f:
        f.write(text)
    with open(app.config_path) as f:
        return len(f.read().splitlines())


def test_a_malformed_line_and_a_repeated_key_are_named_and_mail_goes(tmp_path, sink):
    """One line that is not key = value, or a key written twice, gave every
    page a ticket and stopped delivery. Now the line is named (file and
    number, not its text: it may hold a password), the rest is read, the
    last of a repeated key is used, and the worker logs it too."""
    app = AdminApp(tmp_path / "rt", smtp=sink.server)
    with app:
        admin = app.register(ADMIN)
        bad = _append(app, "\n[smtp]\nlogin secret-in-a-broken-line\n")
        again = _append(app, "sender = Again <again@people.net>\n")
        r = admin.get(app.url("/outbox/index"))
        assert r.status_code == 200, r.text[:2000]
        page = html.unescape(r.text)
        assert "<code>line %d</code> in <code>private/appconfig.ini</code>" % bad in page, page
        assert "not key = value, [section] or a ; comment: it is ignored" in page
        assert "<code>line %d</code>" % (bad - 1) in page  # [smtp] again
        assert "sender again in [smtp]: this last value is used (line " in page
        assert "<code>line %d</code>" % again in page
        assert "secret-in-a-broken-line" not in page
        r = app.act(admin, "test", dict(to="ann@people.net"))
        assert flash(r).startswith("Test mail sent."), flash(r)
        assert wait_for(lambda: sink.messages)
        assert b"From: Again <again@people.net>" in sink.messages[-1][2]
        for name in ("web", "worker"):
            assert wait_for(
                lambda name=name: "(edit line %d in private/appconfig.ini)" % bad in app.log(name)
            ), app.log(name)
        assert "secret-in-a-broken-line" not in app.log("web") + app.log("worker")
        assert not app.errors(), app.errors()


def test_without_db_uri_a_broken_file_is_a_page_that_says_so(tmp_path, sink):
    """A broken line where [db] uri was: the database is not guessed (mail
    queued into another one would never go), every page says what to fix."""
    app = AdminApp(tmp_path / "rt", smtp=sink.server, worker=False)
    with app:
        app.register(ADMIN)
        with open(app.config_path) as f:
            text = f.read()
        with open(app.config_path, "w") as f:
            f.write(text.replace("uri = ", "uri : : ", 1).replace("[db]", "[db", 1))
        r = requests.get(app.url("/default/index"), timeout=30)
        assert r.status_code == 503, r.text[:2000]
        assert "private/appconfig.ini has line " in r.text, r.text
        assert "[db] uri is not read, so no database is opened" in r.text
        os.remove(app.config_path)
        os.mkdir(app.config_path)  # root reads any file: a folder cannot be read
        r = requests.get(app.url("/default/index"), timeout=30)
        assert r.status_code == 503, r.text[:2000]
        assert "the whole file: the file cannot be read (Is a directory)" in r.text, r.text
        os.rmdir(app.config_path)
        with open(app.config_path, "w") as f:
            f.write(text)
        assert requests.get(app.url("/default/index"), timeout=30).status_code == 200


def test_a_db_uri_that_opens_nothing_is_a_page_that_says_so(site):
    """Before, every page was a ticket."""
    app, admin = site
    app.configure("db", "uri", "nodb://nowhere")
    r = requests.get(app.url("/default/index"), timeout=30)
    assert r.status_code == 503, r.text[:2000]
    assert "[db] uri in private/appconfig.ini: the database it names cannot be opened" in r.text
    assert "nowhere" not in r.text  # a URI may hold a password
    assert "mail settings: the database it names cannot be opened" in app.log("web")
    app.configure("db", "uri", app.db_uri)
    assert admin.get(app.url("/outbox/index")).status_code == 200
