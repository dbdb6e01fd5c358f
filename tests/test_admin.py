"""The site admin's side: settings check, dashboard, actions, command line.

Unit level: the settings check logged once per change, and OutboxAdmin's
queries and actions on each database (each finding is in the fast tier:
tests/unit/test_settings_check.py). End to end: a real web2py server (no worker: the tests run
delivery passes themselves, so rows change only when a test says so) with
access rules, CSRF refusal, each action's effect on the rows, the test mail
against an aiosmtpd sink, the command line, and the list over 100,000 rows.
"""

import datetime
import io
import logging
import os
import re
import time
import uuid

import pytest
import requests
from admin_support import AdminApp, artifacts_dir, seed
from conftest import DATABASES, need
from gluon.compileapp import find_exposed_functions
from gluon.storage import Storage
from gluon.tools import Mail
from helpers import flash
from smtpsink import Sink, SinkController

from s3outbox.admin.chart import chart_svg
from s3outbox.admin.outbox import OutboxAdmin
from s3outbox.delivery import check
from s3outbox.delivery.engine import Pass
from s3outbox.delivery.store import utcnow

SECRET = "Pa55-w0rd-XYZ"


# ------------------------------------------------------------ settings check
def test_settings_check_logged_once_per_change(make_db, tablename, caplog):
    from s3outbox import MailS3

    caplog.set_level(logging.INFO, logger="s3outbox")
    check._checked.clear()
    mail = MailS3(
        make_db(), server="127.0.0.1:25", sender="you@gmail.com", tls=False, tablename=tablename
    )

    def errors():
        return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]

    assert check.log_settings_check(mail)
    mail.db.commit()
    assert errors() == [
        "mail settings: sender 'you@gmail.com' is the unedited example "
        "address (edit [smtp] sender in private/appconfig.ini)"
    ]
    caplog.clear()
    for _ in range(3):
        assert not check.log_settings_check(mail)
    # Another process (same database, nothing cached) sees it was logged.
    check._checked.clear()
    other = MailS3(
        make_db(),
        server="127.0.0.1:25",
        sender="you@gmail.com",
        tls=False,
        tablename=tablename,
        migrate=False,
    )
    assert not check.log_settings_check(other)
    assert not caplog.records
    # A change is logged once: both findings now.
    mail.settings.login = "username:password"
    assert check.log_settings_check(mail)
    mail.db.commit()
    assert len(errors()) == 2 and "[smtp] login" in errors()[1]
    caplog.clear()
    mail.settings.login, mail.settings.sender = None, "ops@people.net"
    assert check.log_settings_check(mail)
    assert not errors() and "no problem" in caplog.records[0].getMessage()


# ------------------------------------------------------- OutboxAdmin (unit)
def _ids(mail, *addresses, **kwargs):
    out = []
    for address in addresses:
        assert mail.send(to=address, subject="to %s" % address, message="hello", **kwargs), (
            mail.error
        )
        out.append(int(mail.result["id"]))
    mail.db.commit()
    return out


def _status(mail, row_id):
    return mail.store.outbox[row_id].status


def test_overview_actions_and_detail(mail, sink):
    sink.script["RCPT"] = {"gone@people.net": "550 5.1.1 no such user"}
    admin = OutboxAdmin(mail)
    a1, a2 = _ids(mail, "ann@people.net", "bob@people.net")
    assert mail.send(
        to="cy@people.net",
        subject="with file",
        message="see file",
        attachments=[Mail.Attachment(io.BytesIO(b"x" * 10), filename="a.txt")],
    )
    a3 = int(mail.result["id"])
    # Delivering attachments is the core's business (tests/test_send.py); here
    # the row only needs to exist as sent mail with an attachment.
    mail.store.outbox[a3] = dict(status="sent", sent_on=utcnow(), attempts=1)
    mail.store._insert_attempts([(a3, utcnow(), "w", "sent", 250, None)])
    (bad,) = _ids(mail, "gone@people.net")
    assert mail.process_outbox()["failed"] == 1
    o = admin.overview()
    assert o["counts"]["sent"] == 3 and o["counts"]["failed"] == 1
    assert o["total"] == 4 and o["waiting"] == 0 and o["oldest"] is None
    assert o["recent"] == dict(hour=dict(sent=3, failed=1), day=dict(sent=3, failed=1))
    assert o["held"] is None and o["findings"] == []

    m = admin.message(bad)
    assert m["row"].status == "failed" and "550 5.1.1 no such user" in m["row"].last_error
    assert [a.outcome for a in m["attempts"]] == ["failed"]
    assert [(f.filename, f.content_type) for f in admin.message(a3)["attachments"]] == [
        ("a.txt", "text/plain; charset=utf-8")
    ]  # the whole Content-Type is kept
    assert admin.message(10**9) is None

    # Held: a configuration error, with the banner's reason and hint.
    mail.settings.sender = "you@gmail.com"
    h1, h2 = _ids(mail, "dee@people.net", "eve@people.net")
    waiting = admin.oldest_waiting()
    assert waiting == mail.store.outbox[h1].created_on
    assert mail.process_outbox()["held"] == 2
    held = admin.held()
    assert held["count"] == 2 and "[smtp] sender" in held["reason"]
    assert held["edit"] == "[smtp] sender" and not held["settings_changed"]
    assert held["file"] == "private/appconfig.ini"
    # As the host app names the setting and its file (Sahana Eden's names).
    mail.settings.config_names = {"[smtp] sender": "settings.mail.sender", "file": "000_config.py"}
    held = admin.held()
    assert (held["edit"], held["file"]) == ("settings.mail.sender", "000_config.py")
    mail.settings.config_names = None
    bad_key = Pass(mail).key
    mail.settings.sender = "Outbox <outbox@outbox.localhost>"
    assert admin.held()["settings_changed"]

    # Retry: failed and held only; attempts and expiry start over.
    mail.store.outbox[bad] = dict(expires_on=utcnow() - datetime.timedelta(days=1))
    assert admin.retry(ids=[bad, a1]) == 1
    row = mail.store.outbox[bad]
    assert (row.status, row.attempts, row.expires_on) == ("queued", 0, None)
    assert row.next_attempt_on <= utcnow() and _status(mail, a1) == "sent"
    assert admin.retry(status="held") == 2
    assert mail.store.get_hold(bad_key).due(utcnow())
    with pytest.raises(ValueError):
        admin.retry(status="sent")
    counts = mail.process_outbox()
    assert (counts["sent"], counts["failed"]) == (2, 1)
    assert _status(mail, h1) == _status(mail, h2) == "sent"
    assert admin.held() is None

    # Cancel: queued, held or failed; never a message being sent.
    c1, c2 = _ids(mail, "fay@people.net", "gus@people.net")
    mail.store.outbox[c2] = dict(status="sending")
    mail.db.commit()
    assert admin.cancel(ids=[c1, c2, a1, bad]) == 2
    assert [_status(mail, i) for i in (c1, c2, a1, bad)] == [
        "cancelled",
        "sending",
        "sent",
        "cancelled",
    ]

    # Purge: sent mail older than N days, with attempts and attachments.
    old = utcnow() - datetime.timedelta(days=10)
    for i in (a1, a3):
        mail.store.outbox[i] = dict(created_on=old, sent_on=old)
    mail.db.commit()
    with pytest.raises(ValueError):
        admin.purge(-1)
    assert admin.purge(7, chunk=1) == (2, 2, 1)
    o = mail.store.outbox
    assert mail.db(o.id.belongs([a1, a3])).count() == 0
    assert mail.db(mail.store.attempt.outbox_id.belongs([a1, a3])).count() == 0
    assert mail.db(mail.store.attachment.id > 0).count() == 0
    assert _status(mail, a2) == "sent" and admin.message(a2)["attempts"]
    assert admin.purge(7) == (0, 0, 0)


def test_list_pages_by_keyset_and_filters(db, tablename, mail):
    made = seed(db, tablename, 230, utcnow(), days=2)
    admin = OutboxAdmin(mail)
    ids = [
        r.id
        for r in db(mail.store.outbox).select(mail.store.outbox.id, orderby=~mail.store.outbox.id)
    ]
    seen, page, pages = [], admin.page(size=50), 0
    assert page.newer is None
    while True:
        pages += 1
        seen += [r.id for r in page.rows]
        if page.older is None:
            break
        page = admin.page(size=50, before=page.older)
    assert seen == ids and pages == 5
    back = admin.page(size=50, after=page.rows[0].id)
    assert [r.id for r in back.rows] == ids[150:200] and back.newer and back.older
    first = admin.page(size=50, after=ids[49])
    assert [r.id for r in first.rows] == ids[:49] and first.newer is None

    failed = admin.page(status="failed", size=500)
    assert len(failed.rows) == made["failed"]
    assert {r.status for r in failed.rows} == {"failed"}
    some = admin.page(address="PEOPLE3.NET", size=500)
    assert some.rows and all("people3.net" in r.address for r in some.rows)
    assert len(some.rows) == db(mail.store.outbox.address.like("%@people3.net")).count()
    assert admin.page(address="user%", size=500).rows == []
    none = admin.page(address="nobody-at-all", size=10)
    assert (none.rows, none.newer, none.older) == ([], None, None)
    assert admin.counts() == dict(
        dict.fromkeys(("queued", "sending", "sent", "failed", "held", "cancelled", "bounced"), 0),
        **made,
    )


def test_activity_buckets_and_chart(mail):
    now = utcnow().replace(minute=40, second=0)
    hour = datetime.timedelta(hours=1)
    rows = (
        [(1, now - hour * 0.5, "sent")] * 3
        + [(1, now - hour * 5, "failed")] * 2
        + [(1, now - hour * 5, "retry"), (1, now - hour * 5, "held")]
        + [(1, now - hour * 30, "sent")] * 4
    )
    mail.store._insert_attempts([(rid, when, "w", what, None, None) for rid, when, what in rows])
    mail.db.commit()
    activity = OutboxAdmin(mail).activity(24, 3600, now=now)
    assert len(activity) == 24
    start = activity[0][0]
    assert start == now.replace(minute=0) + hour - 24 * hour

    def slot(when):
        return int((when - start).total_seconds() // 3600)

    got = {i: v for i, (_, v) in enumerate(activity) if any(v.values())}
    assert got == {
        slot(now - hour * 0.5): dict(sent=3, retry=0, held=0, failed=0),
        slot(now - hour * 5): dict(sent=0, retry=1, held=1, failed=2),
    }
    svg = chart_svg(activity)
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "<script" not in svg
    assert svg.count('class="bar-sent"') == 1 and svg.count('class="bar-failed"') == 1
    assert svg.count('class="bar-retry"') == 1 and svg.count('class="bar-held"') == 1
    assert svg.count("<title>") == 24
    assert "3 sent, 0 deferred, retried, 0 held, 0 failed" in svg
    assert "1 deferred, retried, 1 held, 2 failed" in svg


# ----------------------------------------------------------- end to end
ADMIN, USER = "boss@people.net", "pat@people.net"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One web2py server for this module, first user admin, one plain user."""
    handler = Sink()
    with SinkController(handler) as controller:
        handler.server = controller.server_address
        app = AdminApp(
            tmp_path_factory.mktemp("admin") / "rt", smtp=controller.server_address, worker=False
        )
        with app:
            admin = app.register(ADMIN)
            user = app.register(USER)
            yield Storage(app=app, sink=handler, admin=admin, user=user)
            assert not app.errors(), app.errors()


def _queue(site, *addresses, **settings):
    mail = site.app.mail(server=site.sink.server, **settings)
    return mail, _ids(mail, *addresses)


def _failed(site, address=None):
    """A message that really failed: the sink refuses its recipient."""
    address = address or "gone-%s@people.net" % uuid.uuid4().hex[:6]
    site.sink.script["RCPT"] = {address: "550 5.1.1 no such user"}
    mail, (row_id,) = _queue(site, address)
    mail.process_outbox()
    site.sink.script.clear()
    assert _status(mail, row_id) == "failed"
    return mail, row_id


PAGES = [
    "/outbox/index",
    "/outbox/index?chart=week",
    "/outbox/messages",
    "/outbox/bounces",
    "/outbox/messages?status=failed&address=people",
    "/outbox/message/%d",
]
ACTIONS = [("retry", "ids"), ("cancel", "ids"), ("purge", "days"), ("test", "to")]


def test_access_rules(site):
    mail, row_id = _failed(site)
    sent = site.sink.count
    pages = [p % row_id if "%d" in p else p for p in PAGES]
    anonymous = requests.Session()
    for path in pages:
        r = anonymous.get(site.app.url(path), allow_redirects=False)
        assert r.status_code == 303 and "/default/user/login?_next=" in r.headers["Location"], path
        r = site.user.get(site.app.url(path))
        assert (
            "/default/user/not_authorized" in r.url
            and "Insufficient privileges" in r.text
            and "_formkey" not in r.text
        ), path
        r = site.admin.get(site.app.url(path))
        assert r.status_code == 200 and "<h1>" in r.text, path
    key = site.app.formkey(site.admin)
    for action, field in ACTIONS:
        value = dict(ids=row_id, days=0, to="x@people.net")[field]
        for who in (anonymous, site.user):
            r = who.post(
                site.app.url("/outbox/" + action),
                data={field: value, "_formkey": key},
                allow_redirects=False,
            )
            assert r.status_code == 303 and "/default/user/" in r.headers["Location"]
    mail.db.commit()
    assert _status(mail, row_id) == "failed" and site.sink.count == sent


def test_only_the_pages_and_actions_are_urls(site):
    """A helper of the controller without arguments is a URL to web2py
    unless its name starts with two underscores: /outbox/_who gave anyone
    a ticket, /outbox/_admin an object's repr."""
    with open(os.path.join(site.app.app, "controllers", "outbox.py")) as f:
        exposed = set(find_exposed_functions(f.read()))
    pages = {p.split("/")[2].split("?")[0] for p in PAGES}
    assert exposed == pages | {"message", "pause", "resume"} | {a for a, _ in ACTIONS}
    for name in ("_formkey", "_posted", "_admin", "_who", "_ids", "__who"):
        for who in (requests.Session(), site.user):
            for method in (who.get, who.post):
                r = method(site.app.url("/outbox/" + name), allow_redirects=False)
                assert r.status_code == 404, (name, r.status_code, r.text[:200])


def test_csrf_refused(site):
    mail, row_id = _failed(site)
    _, (old,) = _queue(site, "old-%s@people.net" % uuid.uuid4().hex[:6])
    mail.process_outbox()
    long_ago = utcnow() - datetime.timedelta(days=20)
    mail.store.outbox[old] = dict(created_on=long_ago, sent_on=long_ago)
    mail.db.commit()
    app, sent = site.app, site.sink.count
    other = app.login(ADMIN)  # another session of the same admin: another key
    for action, field in ACTIONS:
        data = {field: dict(ids=row_id, days=10, to="x@people.net")[field]}
        r = site.admin.post(app.url("/outbox/" + action), data=data)
        assert r.status_code == 403 and "form key" in r.text, action
        for key in ("forged", "", app.formkey(other)):
            assert app.act(site.admin, action, data, formkey=key).status_code == 403
        r = site.admin.get(app.url("/outbox/%s?%s=%s" % (action, field, data[field])))
        assert r.status_code == 405, action
    mail.db.commit()
    assert _status(mail, row_id) == "failed" and _status(mail, old) == "sent"
    assert site.sink.count == sent
    r = app.act(site.admin, "retry", dict(ids=row_id, _next="http://evil.example/"))
    assert r.ok and r.url.endswith("/outbox/index")
    assert flash(r) == "1 message queued for delivery now."
    mail.db.commit()
    assert _status(mail, row_id) == "queued"


def test_actions_change_rows(site):
    app = site.app
    mail, failed = _failed(site)
    _, (sent,) = _queue(site, "ok-%s@people.net" % uuid.uuid4().hex[:6])
    mail.process_outbox()
    r = app.act(
        site.admin, "retry", dict(ids=[failed, sent], _next="/outbox/outbox/message/%d" % failed)
    )
    assert "/outbox/message/%d" % failed in r.url
    assert flash(r) == (
        "1 message queued for delivery now. 1 skipped: only failed or held mail can be retried."
    )
    mail.db.commit()
    assert (_status(mail, failed), _status(mail, sent)) == ("queued", "sent")

    r = app.act(site.admin, "cancel", dict(ids=[failed]))
    assert flash(r) == "1 message cancelled."
    mail.db.commit()
    assert _status(mail, failed) == "cancelled"
    r = app.act(site.admin, "cancel", dict(ids=[]))
    assert flash(r).startswith("Nothing selected")

    # Held by a broken sender in this pass; "retry held" queues them all.
    held_mail, (h1, h2) = _queue(site, "h1@people.net", "h2@people.net", sender="you@gmail.com")
    held_mail.process_outbox()
    assert _status(mail, h1) == "held"
    page = site.admin.get(app.url("/outbox/index")).text
    assert 'id="held-banner"' in page and "you@gmail.com" in page
    r = app.act(site.admin, "retry", dict(status="held"))
    assert flash(r) == "2 messages queued for delivery now."
    mail.db.commit()
    assert _status(mail, h1) == _status(mail, h2) == "queued"
    r = app.act(site.admin, "retry", dict(status="sent"))
    assert flash(r) == "Only failed or held mail can be retried."

    # Purge: sent more than 30 days ago goes, with its attempt records.
    old = utcnow() - datetime.timedelta(days=40)
    mail.store.outbox[sent] = dict(created_on=old, sent_on=old)
    mail.db.commit()
    r = app.act(site.admin, "purge", dict(days="30"))
    assert re.match(
        r"Purged 1 message sent more than 30 days ago, with 1 attempt "
        r"record and 0 attachments\.",
        flash(r),
    ), flash(r)
    mail.db.commit()
    assert mail.store.outbox[sent] is None
    assert mail.db(mail.store.attempt.outbox_id == sent).count() == 0
    assert flash(app.act(site.admin, "purge", dict(days=""))).startswith("Purge: give")
    r = app.act(site.admin, "purge", dict(days="x"))  # issue 11: a 400, not a flash
    assert r.status_code == 400 and "days must be a whole number" in r.text


def test_test_mail_shows_the_servers_answer(site):
    app, sink = site.app, site.sink
    before = sink.count
    r = app.act(site.admin, "test", dict(to="probe@people.net"))
    assert flash(r) == (
        "Test mail sent. The server %s accepted the test mail to "
        "probe@people.net: 250 OK queued" % sink.server
    )
    assert sink.count == before + 1 and sink.messages[-1][1] == ["probe@people.net"]
    sink.script["RCPT"] = {"nobody@people.net": "550 5.1.1 no such user here"}
    try:
        r = app.act(site.admin, "test", dict(to="nobody@people.net"))
    finally:
        sink.script.clear()
    assert flash(r).startswith("Test mail failed.") and "550 5.1.1 no such user here" in flash(r)
    assert sink.count == before + 1
    r = app.act(site.admin, "test", dict(to="not an address"))
    assert flash(r).startswith("Test mail failed.")


def test_passwords_never_appear(site):
    app = site.app
    _, row_id = _failed(site)
    app.configure("smtp", "login", "mailer:" + SECRET)
    try:
        pages = [site.admin.get(app.url(p % row_id if "%d" in p else p)).text for p in PAGES]
        assert "mailer (password set)" in pages[0]
        r = app.act(site.admin, "test", dict(to="probe@people.net"))
        assert flash(r).startswith("Test mail failed.")  # the sink offers no AUTH
        code, out = app.cli("status")
        assert code == 0 and "mailer (password set)" in out
        for text in pages + [r.text, out, app.log("web")]:
            assert SECRET not in text
    finally:
        app.configure("smtp", "login", "")


def test_settings_findings_on_dashboard_and_logged_once(site):
    app = site.app
    app.configure("smtp", "sender", "you@gmail.com")
    try:
        for _ in range(3):
            page = site.admin.get(app.url("/outbox/index")).text
        assert "sender &#x27;you@gmail.com&#x27; is the unedited example address" in page
        assert (
            "edit <code>[smtp] sender</code> in <code>private/appconfig.ini</code>" in page
            and "blocks all mail" in page
        )
        logged = re.findall(r"mail settings: sender 'you@gmail.com'.*", app.log("web"))
        assert len(logged) == 1, app.log("web")
    finally:
        app.configure("smtp", "sender", "Outbox <outbox@outbox.localhost>")
    page = site.admin.get(app.url("/outbox/index")).text
    assert (
        "Settings check: no problem found in <code>[smtp]</code> in "
        "<code>private/appconfig.ini</code>" in page
    )
    assert "&amp;ndash;" not in page  # the empty "oldest waiting" card


def test_list_page_filters(site):
    app = site.app
    _, failed = _failed(site, "filter-me@people.net")
    r = site.admin.get(app.url("/outbox/messages?status=failed&address=FILTER-ME"))
    rows = re.findall(r'<tr id="msg-(\d+)">', r.text)
    assert rows == [str(failed)]
    r = site.admin.get(app.url("/outbox/messages?status=sent&address=filter-me"))
    assert re.findall(r'<tr id="msg-(\d+)">', r.text) == [] and "No messages" in r.text


def test_command_line(site):
    app = site.app
    mail, failed = _failed(site)
    code, out = app.cli("status")
    assert code == 0 and re.search(r"failed \d+", out) and "Settings check" in out
    code, out = app.cli("list", "--status", "failed", "--limit", "500")
    assert code == 0 and re.search(r"^\s*%d\s" % failed, out, re.M)
    code, out = app.cli("show", str(failed))
    assert code == 0 and "550 5.1.1 no such user" in out
    code, out = app.cli("retry", str(failed))
    assert code == 0 and "1 message(s) queued" in out
    code, out = app.cli("cancel", str(failed))
    assert code == 0 and "1 message(s) cancelled" in out
    mail.db.commit()
    assert _status(mail, failed) == "cancelled"
    code, out = app.cli("purge", "3650")
    assert code == 0 and out.startswith("Purged 0 sent message(s)")
    before = site.sink.count
    code, out = app.cli("test", "cli@people.net")
    assert code == 0 and "accepted" in out and site.sink.count == before + 1
    site.sink.script["RCPT"] = {"cli@people.net": "550 5.1.1 gone"}
    try:
        code, out = app.cli("test", "cli@people.net")
    finally:
        site.sink.script.clear()
    assert code == 1 and "550 5.1.1 gone" in out
    held_mail, (held,) = _queue(site, "cli-held@people.net", sender="you@gmail.com")
    held_mail.process_outbox()
    code, out = app.cli("status")
    assert (
        code == 0
        and "HELD: 1 message(s): sender 'you@gmail.com' is the unedited example address" in out
    )
    assert "Edit [smtp] sender in private/appconfig.ini." in out
    assert "The settings changed since" in out  # the site's own sender is fine
    code, out = app.cli("retry", "--status", "held")
    assert code == 0 and "1 message(s) queued" in out
    assert _status(mail, held) == "queued"
    code, out = app.cli("retry")
    assert code == 2 and "give message numbers or --status" in out
    code, out = app.cli("show", "999999999")
    assert code == 2 and "no message" in out


def test_first_user_admin_and_make_admin(site):
    app = site.app
    email = "new-%s@people.net" % uuid.uuid4().hex[:6]
    newcomer = app.register(email)
    assert "not_authorized" in newcomer.get(app.url("/outbox/index")).url
    code, out = app.cli("make-admin", email.upper())
    assert code == 0 and out.strip() == "%s is now a member of 'admin'" % email
    assert newcomer.get(app.url("/outbox/index")).url.endswith("/outbox/index")
    code, out = app.cli("make-admin", email)
    assert code == 0 and "already a member" in out
    code, out = app.cli("make-admin", "nobody@people.net")
    assert code == 2 and "no user with e-mail nobody@people.net" in out


# ---------------------------------------------------- 100,000 rows, timed
def _engine_uri(engine):
    if engine == "sqlite":
        return None, None
    need(engine)
    import psycopg2

    name = "outbox_admin_%s" % uuid.uuid4().hex[:8]
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test")
    conn.autocommit = True
    conn.cursor().execute("CREATE DATABASE %s" % name)

    def drop():
        conn.cursor().execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        conn.close()

    return DATABASES[engine].rsplit("/", 1)[0] + "/" + name, drop


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_list_page_over_100k_rows(engine, tmp_path, sink):
    """Correct pages over 100,000 rows; the render times go to the report
    (tests/artifacts/list-100k-ENGINE.txt), never into an assertion."""
    uri, drop = _engine_uri(engine)
    try:
        with AdminApp(tmp_path / "rt", smtp=sink.server, db_uri=uri, worker=False) as app:
            admin = app.register(ADMIN)
            made = seed(app.db, "msg_outbox", 100000, utcnow())
            top = app.db.executesql("SELECT MAX(id) FROM msg_outbox")[0][0]
            timings = []

            def get(path, runs=5):
                took = []
                for _ in range(runs):
                    started = time.perf_counter()
                    r = admin.get(app.url(path))
                    took.append(time.perf_counter() - started)
                    assert r.status_code == 200, r.text[:2000]
                timings.append((path, sorted(took)[runs // 2]))
                return r, [int(i) for i in re.findall(r'<tr id="msg-(\d+)">', r.text)]

            get("/outbox/messages", 1)  # warm-up: the first request compiles views
            timings.clear()
            get("/default/index")  # no outbox query: the cost of web2py and models
            r, ids = get("/outbox/messages")
            assert ids == list(range(top, top - 50, -1))
            assert "all (100000)" in r.text
            older = re.search(r'href="([^"]+)" rel="next"', r.text).group(1)
            older = older.replace("&amp;", "&").replace("/outbox/outbox", "/outbox")
            _, ids2 = get(older)
            assert ids2 == list(range(top - 50, top - 100, -1))
            _, deep = get("/outbox/messages?before=%d" % (top - 90000))
            assert deep == list(range(top - 90001, top - 90051, -1))
            _, failed = get("/outbox/messages?status=failed")
            assert len(failed) == 50
            _, held = get("/outbox/messages?status=held&size=200")
            assert len(held) == min(200, made["held"])
            _, some = get("/outbox/messages?address=user77%40people")
            assert some
            _, none = get("/outbox/messages?address=nobody-here")
            assert none == []
            get("/outbox/message/%d" % (top - 500))
            r, _ = get("/outbox/index")
            assert "<b>%d</b>sent" % made["sent"] in r.text
            lines = ["%-60s %7.1f ms" % (path, seconds * 1000) for path, seconds in timings]
            report = "median of 5 requests, 100,000 messages, %s\n%s\n" % (
                engine,
                "\n".join(lines),
            )
            with open(os.path.join(artifacts_dir(), "list-100k-%s.txt" % engine), "w") as f:
                f.write(report)
            print(report)
    finally:
        if drop:
            drop()


def test_tries_keep_counting_across_a_manual_retry(site):
    app = site.app
    mail, failed = _failed(site)
    address = mail.store.outbox[failed].address
    r = app.act(site.admin, "retry", dict(ids=failed))
    assert "1 message queued" in flash(r), flash(r)
    site.sink.script["RCPT"] = {address: "550 5.1.1 no such user"}
    mail.process_outbox()
    site.sink.script.clear()
    assert _status(mail, failed) == "failed"
    r = site.admin.get(app.url("/outbox/message/%d" % failed))
    assert len(re.findall(r'<td class="status-failed">failed</td>', r.text)) == 2
    assert "<th>Tries</th><td>2 (listed under Attempts)" in r.text, r.text
    r = site.admin.get(app.url("/outbox/messages?status=failed"))
    row = re.search(r'<tr id="msg-%d">(.*?)</tr>' % failed, r.text, re.S).group(1)
    assert re.findall(r"<td>(\d+)</td>", row) == ["2"], row
    r = site.admin.get(app.url("/outbox/index"))
    assert "attempts that failed a message, last hour / day" in r.text
    assert "failed (messages now)" in r.text
    code, out = app.cli("show", str(failed))
    assert code == 0 and "tries 2;" in out


def test_pause_holds_until_resumed_admin_post_only(site):
    app = site.app
    mail, (row_id,) = _queue(site, "pause-%s@people.net" % uuid.uuid4().hex[:6])
    key = app.formkey(site.admin)
    for path in ("/outbox/pause", "/outbox/resume"):
        for who in (requests.Session(), site.user):
            r = who.post(app.url(path), data=dict(_formkey=key), allow_redirects=False)
            assert r.status_code == 303 and "/default/user/" in r.headers["Location"]
        assert site.admin.get(app.url(path)).status_code == 405
        assert app.act(site.admin, path.rsplit("/")[-1], formkey="x").status_code == 403
    assert mail.paused() is None
    r = app.act(site.admin, "pause")
    assert "Delivery paused" in flash(r)
    assert "Delivery is paused" in r.text and 'id="resume"' in r.text
    assert mail.paused()["by"] == "admin %s" % ADMIN
    # The pause is the outbox's own state: every process's models (this
    # command line's too) leave it, and no delivery loop sends meanwhile.
    code, out = app.cli("status")
    assert code == 0 and "PAUSED: delivery paused by admin" in out
    assert mail.work(seconds=1.5, poll=0.2) == {}
    assert mail.deliver_some() == dict(paused=True)
    assert _status(mail, row_id) == "queued"
    code, out = app.cli("resume")
    assert code == 0 and "Delivery resumed." in out
    assert mail.work(seconds=0.5, poll=0.2)["sent"] == 1
    assert _status(mail, row_id) == "sent"
    r = app.act(site.admin, "pause")
    r = app.act(site.admin, "resume")
    assert "Delivery resumed" in flash(r) and "Delivery is running" in r.text
