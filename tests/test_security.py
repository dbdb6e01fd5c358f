"""Issue 11, attacked end to end: a real web2py server and scheduler worker
on a copy of the app, driven over HTTP as an attacker (and a careless admin)
would, delivering to an aiosmtpd sink.

Covered: forged Host headers (none reaches a mailed link; a genuine IPv6
Host works), the account-mail flood (figures printed; run with -s), a name
that tries to forge a line in the approver's mail, addresses with % { },
a NUL or a duplicated field, framing headers, redaction on the dashboard and
command line, scrubbing after delivery, and bad dashboard and command-line
parameters. The limits are the shipped defaults; only the window is made
long, so no test straddles a window edge.
"""

import re
import time
import uuid

import pytest
from conftest import DATABASES, need
from helpers import flash, text, wait_for
from pydal import DAL
from webapp import WebApp

SENDER = "Outbox <outbox@outbox.localhost>"
PASSWORD = "Secret123x"
ADMIN = "admin@site.net"
BOSS = "boss@approvers.net"
NEUTRAL = "If an account matches what you entered"
NEUTRAL_FULL = (
    "If an account matches what you entered, we have sent it a link to "
    "reset the password. Please check your email."
)
LIMITED = "Too many account requests"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
FIGURES = []


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield
    print("\nflood figures:")
    for line in FIGURES:
        print("  " + line)


@pytest.fixture(scope="module")
def app(tmp_path_factory, inbox):
    settings = {
        ("scheduler", "period"): "600",
        ("auth", "approver"): BOSS,
        ("outbox", "flow_window"): "100000000",
    }
    with WebApp(
        tmp_path_factory.mktemp("security"), smtp=inbox.server, sender=SENDER, settings=settings
    ) as webapp:
        yield webapp
        assert not webapp.errors()


def register(app, address, first="Test", session=None, headers=None):
    s = session or WebApp.session()
    _, hidden = app.form(s, "/default/user/register")
    data = dict(
        hidden,
        first_name=first,
        last_name="User",
        email=address,
        password=PASSWORD,
        password_two=PASSWORD,
    )
    return s.post(app.url("/default/user/register"), data=data, timeout=30, headers=headers or {})


def verified(app, inbox, address):
    """Register ``address`` and follow its verification link."""
    assert register(app, address).ok
    link = re.search(r"(http://\S+/verify_email/\S+)", text(inbox.wait_count(address)[0]))
    WebApp.session().get(link.group(1), timeout=30)
    assert app.query("SELECT registration_key FROM auth_user WHERE email=?", (address,)) == [("",)]


def login(app, address):
    s = WebApp.session()
    r = app.submit(s, "/default/user/login", dict(email=address, password=PASSWORD))
    return s, r


def ask_reset(app, address, headers=None, same_host=False, source=None):
    """POST a reset request (``headers`` on the POST; on the GET of the form
    too when ``same_host``: web2py keeps form keys per host), from the local
    address ``source`` when given."""
    s = WebApp.session(source)
    if same_host:
        s.headers.update(headers)
    _, hidden = app.form(s, "/default/user/request_reset_password")
    return s.post(
        app.url("/default/user/request_reset_password"),
        timeout=30,
        data=dict(hidden, email=address),
        headers=headers or {},
    )


def outbox_count(app, address):
    return app.query("SELECT COUNT(*) FROM msg_outbox WHERE address=?", (address,))[0][0]


def client_units(app):
    """Account-flow units this client (127.0.0.1) used in the window."""
    rows = app.query("SELECT hits FROM msg_outbox_flowlimit WHERE bucket LIKE 'client:%'")
    return sum(hits for (hits,) in rows)


@pytest.fixture(scope="module")
def admin(app, inbox):
    """The first user, verified: an admin (first_user_admin)."""
    verified(app, inbox, ADMIN)
    s, r = login(app, ADMIN)
    assert "/default/user/logout" in r.text
    return s


def cli(app, *args):
    """scripts/outbox.py in the app's environment: (exit code, stdout, stderr)."""
    p = app.outbox_cli(*args)
    return p.returncode, p.stdout, p.stderr


# ------------------------------------------------------------ forged Host
FORGED = [
    "127.0.0.1:{port}@evil.example",
    "localhost:1@evil.example",
    "1:1@evil.example",
    "evil.example",
    "evil.example:{port}",
    "localhost:{port}/evil.example",
    "localhost:{port}\\evil.example",
    "localhost:{port}#evil.example",
    "localhost:{port}?@evil.example",
    "user@localhost:{port}",
]


def test_forged_host_never_reaches_a_link(app, inbox, admin):
    victim = "victim@people.net"
    verified(app, inbox, victim)
    rows = outbox_count(app, victim)
    for forged in FORGED:
        host = forged.format(port=app.port)
        r = ask_reset(app, victim, headers={"Host": host})
        assert r.status_code in (400, 403), (host, r.status_code)
        assert "Host" in r.text or "Hostname" in r.text, r.text
        r = register(app, "new-%d@people.net" % len(host), headers={"Host": host})
        assert r.status_code in (400, 403), (host, r.status_code)
    assert outbox_count(app, victim) == rows
    assert not app.query("SELECT 1 FROM auth_user WHERE email LIKE 'new-%'")
    # A genuine bracketed IPv6 Host is served, and its link is right.
    ipv6 = "[::1]:%d" % app.port
    assert (
        WebApp.session()
        .get(app.base + "/default/index", timeout=30, headers={"Host": ipv6})
        .status_code
        == 200
    )
    r = ask_reset(app, victim, headers={"Host": ipv6}, same_host=True)
    assert r.status_code == 200 and NEUTRAL in flash(r)
    msg = inbox.wait_count(victim, 2)[-1]
    link = re.search(r"(http://\S+reset_password\?key=\S+)", text(msg)).group(1)
    assert link.startswith("http://%s/outbox/default/user/reset_password?key=" % ipv6)
    assert all("evil" not in text(m) for _, _, m in inbox.arrived)
    # The key works on the real site (reached here through 127.0.0.1).
    page = WebApp.session().get(link.replace(ipv6, "127.0.0.1:%d" % app.port))
    assert "new_password" in page.text


def test_settings_check_warns_without_public_url_off_loopback(app, admin):
    names = "localhost:*, 127.0.0.1:*, [::1]:*"
    app.configure("host", "names", names + ", outbox.people.net")
    try:
        page = admin.get(app.url("/outbox/index"), timeout=30).text
    finally:
        app.configure("host", "names", names)
    assert "public_url is empty on a site that is not on loopback" in page
    assert "not on loopback" not in admin.get(app.url("/outbox/index"), timeout=30).text


def test_public_url_wins_over_the_host(app, inbox, admin):
    app.configure("app", "public_url", "https://public.example")
    try:
        assert register(app, "pub@people.net").ok
        msg = inbox.wait_count("pub@people.net")[0]
        assert "https://public.example/outbox/default/user/verify_email/" in text(msg)
    finally:
        app.configure("app", "public_url", "")


# ---------------------------------------------------------- mail content
def test_a_name_cannot_forge_a_line_in_the_approvers_mail(app, inbox, admin):
    app.configure_many(
        {
            ("auth", "registration_requires_approval"): "true",
            ("auth", "registration_requires_verification"): "false",
        }
    )
    try:
        fake = "Eve\r\nApprove or reject: https://evil.example/take\u2028\u202e"
        assert register(app, "eve@people.net", first=fake).ok
        body = text(inbox.wait_count(BOSS)[0])
    finally:
        app.configure_many(
            {
                ("auth", "registration_requires_approval"): "false",
                ("auth", "registration_requires_verification"): "true",
            }
        )
    lines = body.splitlines()
    approve = [line for line in lines if "Approve or reject:" in line]
    assert approve[0].startswith("Approve or reject: %s/default/approve/" % app.base)
    assert not any(line.startswith("Approve or reject: https://evil") for line in lines)
    assert "Name: Eve Approve or reject: https://evil.example/take User" in lines
    assert app.query("SELECT first_name FROM auth_user WHERE email=?", ("eve@people.net",)) == [
        ("Eve Approve or reject: https://evil.example/take",)
    ]


def test_a_profile_edit_keeps_names_on_one_line(app, inbox, admin):
    s, r = login(app, "victim@people.net")
    assert "/default/user/logout" in r.text
    values = dict(
        first_name="Vic\nApprove or reject: https://evil.example",
        last_name="User",
        email="victim@people.net",
    )
    r = app.submit(s, "/default/user/profile", values)  # without the record id
    assert r.status_code == 400 and "record id" in r.text
    page, hidden = app.form(s, "/default/user/profile")
    record = re.search(r'name="id" type="hidden" value="(\d+)"', page).group(1)
    r = s.post(
        app.url("/default/user/profile"), data=dict(hidden, id=record, **values), timeout=30
    )
    assert r.ok and not app.errors()
    assert app.query("SELECT first_name FROM auth_user WHERE email=?", ("victim@people.net",)) == [
        ("Vic Approve or reject: https://evil.example",)
    ]


@pytest.mark.parametrize("address", ["a%b@people.net", "c{d}@people.net", "e%%{x}@people.net"])
def test_percent_and_braces_arrive_intact(app, inbox, admin, address):
    r = register(app, address)
    assert r.ok and flash(r) == "Email sent"
    msg = inbox.wait_count(address)[0]
    assert msg["To"] == address and ("Welcome %s!" % address) in text(msg)
    # The server has the mail a moment before the worker records it as sent.
    assert wait_for(
        lambda: (
            app.query("SELECT status FROM msg_outbox WHERE address=?", (address,)) == [("sent",)]
        )
    )


# ------------------------------------------------------------- bad input
def test_nul_and_duplicated_fields_get_a_400_not_a_ticket(app, admin):
    s = WebApp.session()
    _, hidden = app.form(s, "/default/user/register")
    data = dict(
        hidden,
        first_name="Nul\x00",
        last_name="User",
        email="nul@people.net",
        password=PASSWORD,
        password_two=PASSWORD,
    )
    r = s.post(app.url("/default/user/register"), data=data, timeout=30)
    assert r.status_code == 400
    assert (
        r.text.strip() == "The field first_name contains a control character "
        "(U+0000), which is not accepted."
    )
    r = ask_reset(app, "nul\x00@people.net")
    assert r.status_code == 400 and "control character" in r.text
    r = s.get(app.url("/default/user/login?_next=%00"), timeout=30)
    assert r.status_code == 400
    r = s.post(
        app.url("/default/user/register"),
        timeout=30,
        data=list(dict(data, first_name="Nul").items()) + [("email", "x@y.net")],
    )
    assert r.status_code == 400 and "given more than once" in r.text
    assert not app.query("SELECT 1 FROM auth_user WHERE email='nul@people.net'")
    assert not app.errors()


def test_bytes_that_are_not_utf8_get_a_400(app, admin):
    r = admin.get(app.url("/outbox/messages?address=%ff%fe"), timeout=30)
    assert r.status_code == 400, r.text
    assert (
        r.text.strip() == "The field address contains bytes that are not "
        "UTF-8, which is not accepted."
    )
    s = WebApp.session()
    _, hidden = app.form(s, "/default/user/register")
    body = (
        "&".join(
            "%s=%s" % (k, v)
            for k, v in dict(
                hidden,
                last_name="User",
                email="bytes@people.net",
                password=PASSWORD,
                password_two=PASSWORD,
            ).items()
        ).encode()
        + b"&first_name=\xff\xfe"
    )
    r = s.post(
        app.url("/default/user/register"),
        data=body,
        timeout=30,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400 and "not UTF-8" in r.text
    assert not app.query("SELECT 1 FROM auth_user WHERE email='bytes@people.net'")
    assert not app.errors()


def test_every_page_forbids_framing(app, admin):
    pages = [
        WebApp.session().get(app.url(p), timeout=30)
        for p in (
            "/default/index",
            "/default/user/login",
            "/default/user/register",
            "/default/user/request_reset_password",
            "/default/user/login?_next=%00",
        )
    ]
    pages += [
        admin.get(app.url(p), timeout=30)
        for p in ("/outbox/index", "/outbox/messages", "/outbox/messages?size=7")
    ]
    pages.append(
        WebApp.session().get(
            app.url("/default/index"), timeout=30, headers={"Host": "evil.example"}
        )
    )
    assert [p.status_code for p in pages] == [200] * 4 + [400] + [200] * 2 + [400, 403]
    assert "3 an address, 30 a client, 300 the site" in pages[5].text  # the limits
    for page in pages:
        assert page.headers["X-Frame-Options"] == "DENY", page.url
        assert page.headers["Content-Security-Policy"] == "frame-ancestors 'none'"


# ---------------------------------------------------------- secrets at rest
def test_keys_and_codes_are_redacted_then_scrubbed(app, inbox, admin):
    user = "red@people.net"
    verified(app, inbox, user)
    assert NEUTRAL in flash(ask_reset(app, user))
    reset = inbox.wait_count(user, 2)[-1]
    key = re.search(r"key=(\d+-%s)" % UUID, text(reset)).group(1)
    app.configure("auth", "two_factor", "true")
    try:
        s, r = login(app, user)
        code = re.search(r"\b(\d{6})\b", text(inbox.wait_count(user, 3)[-1])).group(1)
    finally:
        app.configure("auth", "two_factor", "false")
    ids = [
        i for (i,) in app.query("SELECT id FROM msg_outbox WHERE address=? ORDER BY id", (user,))
    ]
    verify_key = app.query("SELECT registration_key FROM auth_user WHERE email=?", (user,))[0][0]
    verify_id, reset_id, code_id = ids
    shown = {i: admin.get(app.url("/outbox/message/%d" % i), timeout=30).text for i in ids}
    assert "[redacted]" in shown[reset_id] and key not in shown[reset_id]
    assert key.split("-", 1)[1] not in shown[reset_id]
    assert "[redacted]" in shown[code_id] and code not in shown[code_id]
    assert "verify_email/[redacted]" in shown[verify_id]
    assert re.search(UUID, shown[verify_id]) is None and verify_key == ""
    for message_id, secret in ((reset_id, key), (code_id, code)):
        status, out, err = cli(app, "show", str(message_id))
        assert status == 0 and "[redacted]" in out and secret not in out, out + err
    # Scrubbed once the (shortened) retention has passed.
    app.configure("outbox", "secret_retention", "1")
    try:

        def scrubbed():
            bodies = [
                b for (b,) in app.query("SELECT body FROM msg_outbox WHERE address=?", (user,))
            ]
            return all("Removed from the outbox" in b for b in bodies) and bodies

        assert wait_for(scrubbed, 60)
    finally:
        app.configure("outbox", "secret_retention", "")
    assert key not in admin.get(app.url("/outbox/message/%d" % reset_id)).text
    assert not app.query("SELECT 1 FROM msg_outbox WHERE body LIKE ?", ("%" + key + "%",))


# ------------------------------------------------------- bad parameters
BAD_GETS = [
    "/outbox/messages?before=%C2%B2",
    "/outbox/messages?before=99999999999",
    "/outbox/messages?after=-1",
    "/outbox/messages?size=7",
    "/outbox/messages?status=bogus",
    "/outbox/messages?address=%00",
    "/outbox/messages?status=sent&status=failed",
    "/outbox/messages?address=a&address=b",
    "/outbox/index?chart=year",
    "/outbox/message/99999999999",
    "/outbox/message/abc",
    "/outbox/messages?before=+5",
    "/outbox/messages?before=5%20",
    "/outbox/messages?after=%2B5",
    "/outbox/message/1/2",
]
BAD_POSTS = [
    ("purge", dict(days="800000")),
    ("purge", dict(days="\u00b2")),
    ("purge", dict(days="-1")),
    ("purge", [("days", "1"), ("days", "2")]),
    ("retry", dict(ids="\u00b2")),
    ("cancel", dict(ids="99999999999")),
    ("test", dict(to="a@b.net\x00")),
]


def test_bad_dashboard_parameters_get_a_400_and_a_sentence(app, admin):
    for path in BAD_GETS:
        r = admin.get(app.url(path), timeout=30)
        assert r.status_code == 400, (path, r.status_code)
        assert r.text.endswith(".\n") and len(r.text) < 200, (path, r.text)
    page = admin.get(app.url("/outbox/index"), timeout=30).text
    formkey = re.search(r'name="_formkey" type="hidden" value="([^"]+)"', page).group(1)
    for action, data in BAD_POSTS:
        data = list(data.items()) if isinstance(data, dict) else data
        r = admin.post(
            app.url("/outbox/" + action),
            data=data + [("_formkey", formkey)],
            timeout=30,
            allow_redirects=False,
        )
        assert r.status_code == 400, (action, data, r.status_code)
        assert r.text.endswith(".\n") and len(r.text) < 200, (action, r.text)
    assert not app.errors()


@pytest.mark.parametrize(
    "args",
    [
        ("purge", "99999999999"),
        ("purge", "\u00b2"),
        ("purge", "-1"),
        ("list", "--limit", "0"),
        ("list", "--limit", "-1"),
        ("list", "--before", "0"),
        ("list", "--address", "a\x01"),
        ("show", "\u00b2"),
        ("retry", "abc"),
        ("cancel", "1", "--status", "held"),
        ("frobnicate",),
    ],
)
def test_bad_command_line_arguments_exit_2_with_one_line(app, admin, args):
    status, out, err = cli(app, *args)
    assert status == 2, (args, status, out, err)
    assert out == "" and err.count("\n") == 1 and err.startswith("error: "), err


# -------------------------------------------------------------- the flood
def test_account_mail_flood(app, inbox, admin):
    """200 registrations from one client: registrations until the client's
    limit, then a sentence and nothing created or queued. 200 reset requests
    for one address from another client: one reset mail, and only that
    client's requests spent. Runs last: it spends the limits."""
    target = "flood@people.net"
    verified(app, inbox, target)
    before = outbox_count(app, target)
    left = 30 - client_units(app)  # flow_per_client, default 30
    assert 0 < left < 30
    start, refused = time.time(), 0
    for n in range(200):
        r = register(app, "reg%03d@flood.net" % n)
        assert r.status_code == 200
        if LIMITED in r.text:
            refused += 1
    took = time.time() - start
    created = app.query("SELECT COUNT(*) FROM auth_user WHERE email LIKE '%@flood.net'")
    queued = app.query("SELECT COUNT(*) FROM msg_outbox WHERE address LIKE '%@flood.net'")
    assert created == queued == [(left,)] and refused == 200 - left
    FIGURES.append(
        "registration flood: 200 requests from one client in %.1f s, %d "
        "accounts created, %d mails queued, %d refused"
        % (took, created[0][0], queued[0][0], refused)
    )

    start = time.time()
    answers = set()
    for _ in range(200):
        r = ask_reset(app, target, source="127.0.0.2")
        assert r.status_code == 200
        answers.add(flash(r))
    took = time.time() - start
    assert answers == {NEUTRAL_FULL}
    queued = outbox_count(app, target) - before
    assert queued == 1
    assert client_units(app) == 30 + 30  # this client's and the other's
    FIGURES.append(
        "reset flood: 200 requests for one address in %.1f s, %d mail queued" % (took, queued)
    )
    inbox.wait_count(target, 2)
    # Each client's limit is its own, and stays spent.
    assert LIMITED in register(app, "late@people.net").text
    assert answers == {flash(ask_reset(app, "unknown@people.net"))}
    assert outbox_count(app, "unknown@people.net") == 0


# ------------------------------------- two web processes, one database
@pytest.fixture(params=["postgres", "mysql"])
def server_db(request):
    """A database of its own on PostgreSQL or MariaDB (the apps create tables)."""
    engine = request.param
    need(engine)
    name = "outbox_sec_%s" % uuid.uuid4().hex[:10]
    admin = DAL(DATABASES[engine], migrate=False, folder=None)
    admin.commit()  # pydal opened a transaction; CREATE DATABASE needs none
    raw = admin._adapter.connection
    if engine == "postgres":
        raw.autocommit = True
    raw.cursor().execute("CREATE DATABASE %s" % name)
    head, _, tail = DATABASES[engine].partition("?")
    yield "%s/%s%s" % (head.rpartition("/")[0], name, "?" + tail if tail else "")
    raw.cursor().execute(
        "DROP DATABASE %s%s" % (name, " WITH (FORCE)" if engine == "postgres" else "")
    )
    admin.close()


def test_limits_hold_across_two_web_processes(tmp_path, inbox, server_db):
    """Two web2py servers on one PostgreSQL or MariaDB database, requests
    alternating between them: the limits are counted once, in the database."""
    settings = {
        ("auth", "registration_requires_verification"): "false",
        ("outbox", "flow_window"): "100000000",
    }
    first = WebApp(
        tmp_path / "one", smtp=inbox.server, db_uri=server_db, worker=False, settings=settings
    )
    settings[("db", "migrate")] = "false"  # the first server made the tables
    second = WebApp(
        tmp_path / "two", smtp=inbox.server, db_uri=server_db, worker=False, settings=settings
    )
    with first:
        r = register(first, "known@people.net")
        assert r.ok and "/default/index" in r.url
        with second:
            apps = (first, second)
            answers = {
                flash(ask_reset(apps[n % 2], address))
                for n in range(10)
                for address in ("known@people.net", "unknown@people.net")
            }
            made = [register(apps[n % 2], "two%02d@flood.net" % n) for n in range(40)]
            assert not first.errors() and not second.errors()
    db = DAL(server_db, migrate=False, folder=None)
    try:
        queued = dict(db.executesql("SELECT address, COUNT(*) FROM msg_outbox GROUP BY address"))
        users = db.executesql("SELECT COUNT(*) FROM auth_user WHERE email LIKE '%@flood.net'")[0][
            0
        ]
        hits = db.executesql("SELECT hits FROM msg_outbox_flowlimit WHERE bucket LIKE 'client:%'")
    finally:
        db.close()
    assert answers == {NEUTRAL_FULL}
    # One reset mail (then the pending link holds), none to the unknown
    # address. The client's 30 units: the known address's registration, the
    # 20 resets (known or not, each request counts), then 9 registrations.
    assert queued.get("known@people.net") == 1 and "unknown@people.net" not in queued
    assert users == 9 and [LIMITED in r.text for r in made].count(True) == 31
    assert [tuple(h) for h in hits] == [(30,)]
