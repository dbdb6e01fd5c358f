"""Every account flow, end to end: a real web2py server and scheduler worker,
driven over HTTP with real form keys, delivering to an aiosmtpd sink.

The module runs once on SQLite and once on a fresh PostgreSQL database.
One app serves the module (its mail settings are broken and repaired, approval
turned on and off through private/appconfig.ini, as an admin would). The
enqueue-to-accepted time of each mail (form POST to the sink accepting it) is
printed; run with -s to see it.
"""

import re
import time

import pytest
from conftest import fresh_postgres
from helpers import Inbox, flash, text
from smtpsink import SinkController
from webapp import WebApp

SENDER = "Outbox <outbox@outbox.localhost>"
PASSWORD = "Secret123x"
ADMIN = "admin@site.net"
BOSS = "boss@approvers.net"
TIMES = []


def link(msg, pattern):
    return re.search(r"(https?://\S*%s\S*)" % pattern, text(msg)).group(1)


def timed(flow, start, arrived):
    TIMES.append((flow, arrived - start))
    print("\n[enqueue-to-accepted] %-34s %.2f s" % (flow, arrived - start))


def register(app, s, mail, first="Test", username=None):
    data = dict(
        first_name=first, last_name="User", email=mail, password=PASSWORD, password_two=PASSWORD
    )
    if username:
        data["username"] = username
    return app.submit(s, "/default/user/register", data)


def login(app, who, password=PASSWORD, base=None):
    s = WebApp.session()
    field = "username" if "@" not in who else "email"
    path = (base or app.base) + "/default/user/login"
    r = app.submit(s, path, {field: who, "password": password})
    return s, r


def logged_in(r, mail):
    return "/default/user/logout" in r.text and mail in r.text


@pytest.fixture(scope="module", autouse=True)
def report():
    """Print all the times measured in this module together, at its end."""
    yield
    print("\nenqueue-to-accepted (form POST to the SMTP sink accepting the mail):")
    for flow, seconds in TIMES:
        print("  %-36s %.2f s" % (flow, seconds))


@pytest.fixture(scope="module")
def inbox(e2e_db_uri):
    """A fresh inbox for each database the module runs on."""
    box = Inbox()
    with SinkController(box.sink) as controller:
        box.server = controller.server_address
        yield box


@pytest.fixture(scope="module")
def app(tmp_path_factory, inbox, e2e_db_uri):
    """One server and worker for the module. The delivery task runs for the
    whole module (long period), so no mail waits for the scheduler."""
    settings = {
        ("scheduler", "period"): "600",
        ("scheduler", "heartbeat"): "1",
        ("auth", "approver"): "group:admin, " + BOSS,
    }
    with WebApp(
        tmp_path_factory.mktemp("auth"),
        smtp=inbox.server,
        sender=SENDER,
        settings=settings,
        db_uri=e2e_db_uri,
    ) as webapp:
        yield webapp
        assert not webapp.errors()


@pytest.fixture(scope="module")
def admin(app, inbox):
    """The first user registers and verifies: an admin (first_user_admin)."""
    s = WebApp.session()
    start = time.time()
    r = register(app, s, ADMIN, "Ada")
    assert r.ok and flash(r) == "Email sent"
    at, msg = inbox.wait(ADMIN, start)
    timed("registration (verification mail)", start, at)
    r = s.get(link(msg, "verify_email"))
    assert flash(r) == "Email verified"
    s, r = login(app, ADMIN)
    assert logged_in(r, ADMIN)
    return s


def outbox_rows(app, address):
    return app.query(
        "SELECT status, priority, last_error, pe_id FROM msg_outbox WHERE address=? ORDER BY id",
        (address,),
    )


def test_broken_mail_settings_keep_the_registration(app, inbox, admin):
    app.configure("smtp", "sender", "you@gmail.com")
    try:
        s = WebApp.session()
        r = register(app, s, "bob@people.net", "Bob")
        assert r.ok and r.url.endswith("/default/index")
        assert flash(r) == "Email sent"
        assert "Unable to send" not in r.text and not app.errors()
        assert app.query(
            "SELECT registration_key FROM auth_user WHERE email=?", ("bob@people.net",)
        )[0][0]
        deadline = time.time() + 30
        while time.time() < deadline:
            status, priority, reason, pe_id = outbox_rows(app, "bob@people.net")[0]
            if status == "held":
                break
            time.sleep(0.2)
        assert (status, priority, pe_id) == ("held", 1, None)
        assert "you@gmail.com" in reason and "example" in reason
        assert not inbox.to("bob@people.net")
    finally:
        repaired = time.time()
        app.configure("smtp", "sender", SENDER)
    at, msg = inbox.wait("bob@people.net", repaired)
    timed("held registration after repair", repaired, at)
    assert msg["From"] == SENDER
    assert link(msg, "verify_email").startswith(app.base + "/default/user/")
    r = s.get(link(msg, "verify_email"))
    assert r.ok and flash(r) == "Email verified"
    assert (
        app.query("SELECT registration_key FROM auth_user WHERE email=?", ("bob@people.net",))[0][
            0
        ]
        == ""
    )
    s, r = login(app, "bob@people.net")
    assert logged_in(r, "bob@people.net")


def test_registration_kept_when_send_refuses(app, inbox, admin):
    """web2py deletes the new user when mailer.send() says False; here the
    user stays, sees the usual message, and the admin finds it in the log."""
    app.configure("outbox", "max_size", "100")  # every mail is too big
    try:
        r = register(app, WebApp.session(), "fay@people.net", "Fay")
        assert r.ok and r.url.endswith("/default/index")
        assert flash(r) == "Email sent" and not app.errors()
    finally:
        app.configure("outbox", "max_size", "")
    assert app.query("SELECT registration_key FROM auth_user WHERE email=?", ("fay@people.net",))[
        0
    ][0]
    assert not outbox_rows(app, "fay@people.net")
    assert "verification mail to fay@people.net was not queued" in app.log("web")


def test_two_factor_code(app, inbox, admin):
    app.configure("auth", "two_factor", "true")
    try:
        start = time.time()
        s, r = login(app, ADMIN)
        assert "authentication_code" in r.text and not logged_in(r, ADMIN)
        at, msg = inbox.wait(ADMIN, start)
        timed("two-factor code", start, at)
        code = re.search(r"\b(\d{6})\b", text(msg)).group(1)
        r = app.submit(s, "/default/user/login", dict(authentication_code=code))
        assert logged_in(r, ADMIN)
        assert app.query(
            "SELECT priority FROM msg_outbox WHERE address=? ORDER BY id DESC LIMIT 1", (ADMIN,)
        ) == [(1,)]
    finally:
        app.configure("auth", "two_factor", "false")


def test_two_factor_codes_are_limited_per_address(app, inbox, admin):
    """Past flow_codes_per_address a login gets the code form and a sentence,
    and no mail; the account mails of the address are not spent by codes."""
    who, start = "dora@people.net", time.time()  # no other test logs in as Dora
    assert register(app, WebApp.session(), who, "Dora").ok
    assert (
        flash(WebApp.session().get(link(inbox.wait(who, start)[1], "verify_email")))
        == "Email verified"
    )
    app.configure("auth", "two_factor", "true")
    app.configure("outbox", "flow_codes_per_address", "2")
    try:
        pages = [login(app, who)[1] for _ in range(3)]
    finally:
        app.configure("auth", "two_factor", "false")
        app.configure("outbox", "flow_codes_per_address", "")
    assert all("authentication_code" in r.text and r.status_code == 200 for r in pages)
    assert ["no new one was sent" in r.text for r in pages] == [False, False, True]
    assert len(outbox_rows(app, who)) == 3  # the verification mail and two codes
    assert "login code limit reached" in app.log("web") and not app.errors()
    # Codes count on their own: with flow_per_address 3, a reset link is
    # still queued after the verification mail and two codes.
    app.submit(WebApp.session(), "/default/user/request_reset_password", dict(email=who))
    assert len(outbox_rows(app, who)) == 4


def test_approval(app, inbox, admin):
    app.configure("auth", "registration_requires_approval", "true")
    try:
        s = WebApp.session()
        start = time.time()
        r = register(app, s, "carol@people.net", "Carol")
        assert flash(r) == "Email sent"
        at, msg = inbox.wait("carol@people.net", start)
        timed("approval: verification mail", start, at)
        start = time.time()
        r = s.get(link(msg, "verify_email"))
        assert flash(r) == "Registration is pending approval"
        at, to_admin = inbox.wait(ADMIN, start)
        timed("approval: mail to approver group", start, at)
        at, to_boss = inbox.wait(BOSS, start)
        timed("approval: mail to approver address", start, at)
        assert "carol@people.net" in to_admin["Subject"]
        approve = link(to_admin, "approve")
        assert approve == link(to_boss, "approve")
        _, r = login(app, "carol@people.net")
        assert not logged_in(r, "carol@people.net")
        assert "/default/user/login" in WebApp.session().get(approve).url
        assert "/default/approve" in admin.get(app.base + "/default/index").text
        page = admin.get(app.base + "/default/approve")
        assert "carol@people.net" in page.text and approve.endswith(
            re.search(r'href="([^"]*/default/approve/\d+)"', page.text).group(1)
        )
        page = admin.get(approve)
        assert "carol@people.net" in page.text
        start = time.time()
        r = app.submit(admin, approve, dict(decision="approve"))
        assert flash(r) == "Approved: carol@people.net"
        at, msg = inbox.wait("carol@people.net", start)
        timed("approval: approved notice", start, at)
        assert msg["Subject"] == "Your account is approved"
        _, r = login(app, "carol@people.net")
        assert logged_in(r, "carol@people.net")
        assert {row[1] for row in outbox_rows(app, "carol@people.net")} == {1}
        assert {row[3] for row in outbox_rows(app, BOSS)} == {None}

        # Without verification the approvers are told at registration; a
        # rejected registration cannot log in and is not told.
        app.configure("auth", "registration_requires_verification", "false")
        start = time.time()
        r = register(app, WebApp.session(), "gus@people.net", "Gus")
        assert flash(r) == "Registration is pending approval"
        at, to_admin = inbox.wait(ADMIN, start)
        timed("approval without verification", start, at)
        assert "gus@people.net" in to_admin["Subject"]
        r = app.submit(admin, link(to_admin, "approve"), dict(decision="reject"))
        assert flash(r) == "Rejected: gus@people.net"
        assert "gus@people.net" not in admin.get(app.base + "/default/approve").text
        assert not logged_in(login(app, "gus@people.net")[1], "gus@people.net")
        assert not outbox_rows(app, "gus@people.net")
    finally:
        app.configure_many(
            {
                ("auth", "registration_requires_approval"): "false",
                ("auth", "registration_requires_verification"): "true",
            }
        )


def test_password_reset(app, inbox, admin):
    public = "http://localhost:%d" % app.port
    app.configure("app", "public_url", public)
    try:
        s = WebApp.session()
        register(app, s, "dan@people.net", "Dan")
        verify = inbox.wait("dan@people.net", 0)[1]
        assert link(verify, "verify_email").startswith(public + "/outbox/")
        s.get(link(verify, "verify_email"))
        start = time.time()
        known = app.submit(s, "/default/user/request_reset_password", dict(email="dan@people.net"))
        unknown = app.submit(
            WebApp.session(),
            "/default/user/request_reset_password",
            dict(email="nobody@people.net"),
        )
        assert known.url == unknown.url and known.url.endswith("/default/user/login")
        assert flash(known) == flash(unknown) and "If an account" in flash(known)
        assert not outbox_rows(app, "nobody@people.net")
        at, msg = inbox.wait("dan@people.net", start)
        timed("password reset", start, at)
        assert login(app, "dan@people.net")[1].url.endswith("/default/index")
        reset = link(msg, "reset_password")
        assert reset.startswith(public + "/outbox/default/user/reset_password?key=")
        new = "Changed456y"
        page = s.get(reset)
        assert "new_password" in page.text
        r = app.submit(s, page.url, dict(new_password=new, new_password2=new))
        assert flash(r) == "Password changed"
        assert not logged_in(login(app, "dan@people.net")[1], "dan@people.net")
        assert logged_in(login(app, "dan@people.net", new)[1], "dan@people.net")
        assert {row[1] for row in outbox_rows(app, "dan@people.net")} == {1}
    finally:
        app.configure("app", "public_url", "")


@pytest.fixture
def own_db_uri(e2e_db_uri):
    """A database for a second app beside the module's: its own SQLite file
    (None), or another fresh PostgreSQL database."""
    if e2e_db_uri is None:
        yield None
        return
    with fresh_postgres() as uri:
        yield uri


def test_username_recovery(tmp_path, inbox, own_db_uri):
    settings = {("scheduler", "period"): "600", ("auth", "use_username"): "true"}
    with WebApp(
        tmp_path / "rt", smtp=inbox.server, sender=SENDER, settings=settings, db_uri=own_db_uri
    ) as app:
        s = WebApp.session()
        register(app, s, "erin@people.net", "Erin", username="erin")
        s.get(link(inbox.wait("erin@people.net", 0)[1], "verify_email"))
        start = time.time()
        known = app.submit(s, "/default/user/retrieve_username", dict(email="erin@people.net"))
        unknown = app.submit(
            WebApp.session(), "/default/user/retrieve_username", dict(email="nobody@people.net")
        )
        assert known.url == unknown.url and flash(known) == flash(unknown)
        assert "If an account" in flash(known)
        at, msg = inbox.wait("erin@people.net", start)
        timed("username recovery", start, at)
        assert "Your username is: erin" in text(msg)
        assert not outbox_rows(app, "nobody@people.net")
        assert logged_in(login(app, "erin")[1], "erin@people.net")
        start = time.time()
        r = app.submit(
            WebApp.session(), "/default/user/request_reset_password", dict(username="erin")
        )
        assert "If an account" in flash(r)
        at, msg = inbox.wait("erin@people.net", start)
        timed("password reset by username", start, at)
        assert not app.errors()
