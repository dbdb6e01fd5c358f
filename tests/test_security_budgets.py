"""Issue 20 (the app's half), attacked end to end on a real web2py server
and scheduler worker delivering to an aiosmtpd sink, with usernames on (so
reset asks for a username and username recovery is there):

- limits outsiders cannot spend: 30 resets for made-up usernames from each
  of 10 loopback addresses, then a real reset and a registration from a new
  address; a stranger's resets for someone else's account;
- forms with tens of thousands of fields, or too large a body: 413 before
  web2py parses them (the time of each is printed; run with -s);
- a file part in each text field of the account pages and the dashboard: 400;
- the dashboard's ``_next`` normalised before the prefix check.

Requests come from several loopback addresses (127.0.0.x, WebApp.session's
``source``), so the server sees several clients, as it would several networks.
"""

import re
import time

import pytest
import requests
from helpers import flash, text
from webapp import WebApp

PASSWORD = "Secret123x"
NEUTRAL = "If an account matches what you entered"
LIMITED = "Too many account requests"
FIGURES = []


def client(n):
    """A browser session from 127.0.0.``n``."""
    return WebApp.session("127.0.0.%d" % n)


@pytest.fixture(scope="module", autouse=True)
def figures():
    yield
    print("\nissue 20 figures:")
    for line in FIGURES:
        print("  " + line)


@pytest.fixture(scope="module")
def app(tmp_path_factory, inbox):
    settings = {
        ("scheduler", "period"): "600",
        ("auth", "use_username"): "true",
        ("outbox", "flow_window"): "100000000",
    }
    with WebApp(
        tmp_path_factory.mktemp("budgets"), smtp=inbox.server, settings=settings
    ) as webapp:
        yield webapp
        assert not webapp.errors()


def register(app, s, username):
    return app.submit(
        s,
        "/default/user/register",
        dict(
            first_name="Test",
            last_name="User",
            username=username,
            email="%s@people.net" % username,
            password=PASSWORD,
            password_two=PASSWORD,
        ),
    )


def verified(app, inbox, username, s=None):
    address = "%s@people.net" % username
    assert register(app, s or client(1), username).ok
    link = re.search(r"(http://\S+/verify_email/\S+)", text(inbox.wait_count(address)[0]))
    WebApp.session().get(link.group(1), timeout=30)
    return address


def reset(app, s, username):
    return app.submit(s, "/default/user/request_reset_password", dict(username=username))


def queued(app, address):
    return app.query("SELECT COUNT(*) FROM msg_outbox WHERE address=?", (address,))[0][0]


def units(app, scope):
    """Units used of every counter of ``scope`` (the buckets hold hashes)."""
    return sorted(
        h
        for (h,) in app.query(
            "SELECT hits FROM msg_outbox_flowlimit WHERE bucket LIKE ?", (scope + ":%",)
        )
    )


@pytest.fixture(scope="module")
def admin(app, inbox):
    verified(app, inbox, "boss")  # the first user: an admin
    s = WebApp.session()
    r = app.submit(s, "/default/user/login", dict(username="boss", password=PASSWORD))
    assert "/default/user/logout" in r.text
    return s


# ------------------------------------------------------------------ budgets
def test_made_up_usernames_spend_only_their_own_networks(app, inbox, admin):
    """The issue's finding: 300 such requests used up the site's 300 an hour,
    so every new client was refused registration and a real reset queued
    nothing. Now each network spends its own requests, nothing else."""
    victim = verified(app, inbox, "victim", client(40))
    start, answers = time.time(), set()
    for n in range(2, 12):
        s = client(n)
        for k in range(30):
            answers.add(flash(reset(app, s, "ghost-%d-%d" % (n, k))))
    took = time.time() - start
    assert len(answers) == 1 and NEUTRAL in answers.pop()
    assert units(app, "client")[-10:] == [30] * 10
    # Nothing of the address or site budgets: only real mail spends them.
    assert units(app, "site") == [] and len(units(app, "address")) == 2  # 2 registrations

    before = queued(app, victim)
    r = reset(app, client(12), "victim")
    assert NEUTRAL in flash(r) and queued(app, victim) == before + 1
    r = register(app, client(13), "newcomer")
    assert LIMITED not in r.text and queued(app, "newcomer@people.net") == 1
    # The flooding networks' own budget is spent: they are refused.
    assert LIMITED in register(app, client(2), "flooder").text
    FIGURES.append(
        "30 resets for made-up usernames x 10 addresses in %.1f s; then "
        "from a new address: reset queued %d mail, registration queued %d"
        % (took, queued(app, victim) - before, queued(app, "newcomer@people.net"))
    )
    log = app.log("web")
    assert "flow_per_client (the requests of client network 127.0.0.2) is used up" in log, log


def test_a_stranger_cannot_use_up_the_owners_reset(app, inbox, admin):
    """Before: three requests from anyone used up an address's hour (requests
    refused because a link was pending counted too). Now only mails that go
    out count, and each carries a working link to the owner."""
    owner = verified(app, inbox, "owner", client(50))
    for _ in range(5):
        assert NEUTRAL in flash(reset(app, client(51), "owner"))
    mails = inbox.wait_count(owner, 2)  # verification, one reset
    assert queued(app, owner) == 2
    # The pending link's 15 minutes pass (its time is in its key).
    app.query(
        "UPDATE auth_user SET reset_password_key = '1000-' || "
        "substr(reset_password_key, instr(reset_password_key, '-') + 1) "
        "WHERE username='owner'"
    )
    s = client(52)
    assert NEUTRAL in flash(reset(app, s, "owner"))
    mails = inbox.wait_count(owner, 3)
    link = re.search(r"(http://\S+/reset_password\?key=\S+)", text(mails[-1])).group(1)
    page = s.get(link, timeout=30)
    new = "Changed456y"
    r = app.submit(s, page.url, dict(new_password=new, new_password2=new))
    assert flash(r) == "Password changed"
    r = app.submit(WebApp.session(), "/default/user/login", dict(username="owner", password=new))
    assert "/default/user/logout" in r.text


# ---------------------------------------------------------- request bodies
@pytest.mark.parametrize("fields", [10000, 20000, 100000])
def test_many_fields_are_refused_before_parsing(app, fields):
    """10k fields took 4.9 s, 20k 42 s and 100k over ten minutes."""
    body = "&".join("f%d=v" % i for i in range(fields))
    start = time.time()
    r = requests.post(
        app.url("/default/user/login"),
        data=body,
        timeout=60,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Connection": "close"},
    )
    took = time.time() - start
    assert r.status_code == 413 and "more than 1000 form fields" in r.text
    FIGURES.append(
        "POST of %d fields (%d bytes): %d in %.2f s" % (fields, len(body), r.status_code, took)
    )


def test_many_multipart_fields_and_a_large_body_are_refused(app, admin):
    parts = {"f%d" % i: (None, "v") for i in range(8000)}  # under 1 MiB
    r = requests.post(
        app.url("/default/user/login"), files=parts, timeout=60, headers={"Connection": "close"}
    )
    assert r.status_code == 413 and "form fields" in r.text
    r = requests.post(
        app.url("/default/user/login"),
        data={"x": "y" * 2**20},
        timeout=60,
        headers={"Connection": "close"},
    )
    assert r.status_code == 413 and "at most 1048576" in r.text
    s = WebApp.session()
    r = app.submit(s, "/default/user/login", dict(username="boss", password=PASSWORD))
    assert "/default/user/logout" in r.text  # a real form still works


# ------------------------------------------------------- files in text fields
FILE_FIELDS = [
    ("/default/user/register", "password"),
    ("/default/user/register", "_next"),
    ("/default/user/login", "password"),
    ("/default/user/login", "_next"),
    ("/default/user/request_reset_password", "username"),
    ("/default/user/request_reset_password", "_next"),
    ("/default/user/retrieve_username", "_next"),
    ("/outbox/retry", "status"),
    ("/outbox/purge", "days"),
    ("/outbox/test", "to"),
    ("/outbox/retry", "_next"),
]


@pytest.mark.parametrize("path, field", FILE_FIELDS)
def test_a_file_in_a_text_field_is_a_400(app, admin, path, field):
    """Each of these was a 500 and a ticket."""
    if path.startswith("/outbox/"):
        s, form = admin, "/outbox/index"
    else:
        s, form = WebApp.session(), path
    _, hidden = app.form(s, form)
    data = dict(
        hidden,
        username="boss",
        email="boss@people.net",
        password=PASSWORD,
        status="failed",
        days="1",
        to="boss@people.net",
        _next="/outbox",
    )
    data.pop(field)
    r = s.post(
        app.url(path),
        data=data,
        files={field: ("x.txt", b"text")},
        timeout=30,
        headers={"Connection": "close"},
    )
    assert r.status_code == 400, r.text
    assert "The field %s was sent as a file; it takes text." % field in r.text


def test_next_stays_in_the_dashboard(app, admin):
    """``_next=/outbox/outbox/../../evil`` redirected to /evil."""
    _, hidden = app.form(admin, "/outbox/index")
    for bad in ("/outbox/outbox/../../evil", "/outbox/outbox/%2e%2e/%2e%2e/evil"):
        r = admin.post(
            app.url("/outbox/purge"),
            allow_redirects=False,
            timeout=30,
            data=dict(hidden, days="3650", _next=bad),
            headers={"Connection": "close"},
        )
        assert r.status_code == 303 and r.headers["Location"] == "/outbox/outbox/index"
    r = admin.post(
        app.url("/outbox/purge"),
        allow_redirects=False,
        timeout=30,
        data=dict(hidden, days="3650", _next="/outbox/outbox/messages?status=sent"),
        headers={"Connection": "close"},
    )
    assert r.headers["Location"] == "/outbox/outbox/messages?status=sent"
