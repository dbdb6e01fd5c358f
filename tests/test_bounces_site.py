"""Bounces end to end: a real web2py server and scheduler worker, whose
delivery task sends through a real Postfix (tests/postfix.py) and reads the
bounce mailbox in a real Dovecot (tests/dovecot.py) every 2 seconds, both
configured only through private/appconfig.ini; 100 forged or malformed
reports in the mailbox change nothing while the worker goes on reading.
The admin sees the bounced addresses on the dashboard and on the command
line; Chromium takes the screenshot tests/artifacts/bounces.png
(docs/bounces.png is a copy)."""

import os
import re

import pytest
from admin_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    AdminApp,
    artifacts_dir,
    chromium_missing,
)
from bounce_mail import dsn, hostile
from conftest import unavailable
from dovecot import PASSWORD as BOX_PASSWORD
from dovecot import Dovecot
from dovecot import unusable as no_dovecot
from gluon.storage import Storage
from helpers import wait_for
from postfix import Postfix
from postfix import unusable as no_postfix

from s3outbox.delivery import returnpath

pytestmark = pytest.mark.skipif(
    bool(no_postfix() or no_dovecot()), reason=str(no_postfix() or no_dovecot())
)
ADMIN = "boss@people.net"
DEAD = ["ann.rivera@dead.people.net", "bo.chen@dead.people.net", "cy.okafor@dead.people.net"]
HOSTILE = "<script>alert(1)</script> \u202eevil"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The worker marks the three dead addresses; then 100 forged or
    malformed reports land in the mailbox, and after them a report with a
    valid TOKEN for eve whose diagnostic holds markup: the worker, still
    reading, marks eve, and nothing else changes."""
    with Dovecot() as box, Postfix(mailbox=box) as relay:
        url = box.url("imaps").replace("%", "%%")  # appconfig.ini: % is written %%
        app = AdminApp(
            tmp_path_factory.mktemp("bounces") / "rt",
            smtp=relay.server,
            settings={
                ("outbox", "bounce_address"): "bounces@bounce.people.net",
                ("outbox", "bounce_mailbox"): url,
                ("outbox", "bounce_interval"): "2",
                ("smtp", "self_signed_certificate"): "true",
            },
        )
        with app:
            admin = app.register(ADMIN)
            mail = app.mail(server=relay.server)
            ids = {}
            for to in DEAD + ["dan@people.net", "eve@people.net"]:
                assert mail.send(
                    to=to, subject="Flood warning: move uphill", message="The river is rising."
                )
                ids[to] = int(mail.result["id"])
            app.db.commit()
            done = wait_for(lambda: _statuses(app, ids, "bounced") == set(DEAD), timeout=180)
            assert done, app.log("worker")[-5000:]
            site = Storage(app=app, admin=admin, ids=ids, mail=mail, box=box)
            _hostile_reports(site)
            yield site
            assert not app.errors(), app.errors()


def _statuses(app, ids, status):
    app.db.commit()
    o = app.db.msg_outbox
    return {to for to, i in ids.items() if o[i].status == status}


def _hostile_reports(site):
    mail, o = site.mail, site.mail.store.outbox
    site.db_before = _rows(mail)
    targets = [o[site.ids[to]] for to in ("dan@people.net", "eve@people.net")] * 15
    row = o[site.ids["eve@people.net"]]
    own = returnpath.envelope(
        "bounces@bounce.people.net",
        returnpath.token(returnpath.key(mail.store), row.id, row.message_id),
    )
    full = (
        dsn(own, "eve@people.net", row.message_id)
        .replace(b"5.1.1 forged", b"5.2.2 " + HOSTILE.encode("utf-8"))
        .replace(b"Status: 5.1.1", b"Status: 5.2.2")
        .replace(b"smtp; 550", b"smtp; 552")
    )
    site.box.append(hostile(mail, targets) + [full])
    assert wait_for(
        lambda: _statuses(site.app, site.ids, "bounced") == set(DEAD + ["eve@people.net"]),
        timeout=120,
    ), site.app.log("worker")


def _rows(mail):
    mail.db.commit()
    o = mail.store.outbox
    return {r.id: (r.status, r.last_error, r.attempts) for r in mail.db(o).select()}


def test_the_worker_marks_the_bounced_and_only_them(site):
    assert _statuses(site.app, site.ids, "sent") == {"dan@people.net"}
    o = site.app.db.msg_outbox
    for to in DEAD:
        row = o[site.ids[to]]
        assert "5.1.1" in row.last_error and "user unknown: mailbox unavailable" in row.last_error
    after = _rows(site.mail)
    eve = site.ids["eve@people.net"]
    assert {k: v for k, v in after.items() if k != eve} == {
        k: v for k, v in site.db_before.items() if k != eve
    }  # the forgeries: nothing
    assert wait_for(lambda: site.box.count() == 100, timeout=30)  # they stay
    a = site.app.db.msg_outbox_attempt
    assert site.app.db(a.outcome == "bounced").count() == 4
    assert "Traceback" not in site.app.log("worker")


def test_dashboard_lists_and_filters_bounces(site):
    app, admin = site.app, site.admin
    page = admin.get(app.url("/outbox/index")).text
    assert re.search(r"<b>4</b>bounced", page), page  # the status card
    assert 'id="bounces-link"' in page and "Bounces (4)" in page
    assert "return path bounces@bounce.people.net (+TOKEN)" in page
    r = admin.get(app.url("/outbox/bounces"))
    assert r.status_code == 200
    for to in DEAD:
        assert to in r.text
    assert r.text.count("user unknown: mailbox unavailable") == 3
    assert "&lt;script&gt;alert(1)&lt;/script&gt; evil" in r.text  # no markup, no RLO
    assert "<script>alert" not in r.text and "\u202e" not in r.text
    rows = re.findall(
        r'<tr class="bounce">',
        admin.get(app.url("/outbox/bounces?address=BO.CHEN&kind=bounced")).text,
    )
    assert len(rows) == 1
    r = admin.get(app.url("/outbox/bounces?kind=delayed"))
    assert "No delivery reports of kind delayed" in r.text
    r = admin.get(app.url("/outbox/bounces?kind=nonsense"))
    assert r.status_code == 400 and "kind must be one of bounced, delayed" in r.text
    r = admin.get(app.url("/outbox/messages?status=bounced"))
    assert len(re.findall(r'<tr id="msg-', r.text)) == 4
    for text in (page, r.text, app.log("worker"), app.log("web")):
        assert BOX_PASSWORD not in text and "wo%25rd" not in text


def test_command_line_bounces(site):
    code, out = site.app.cli("bounces", "--kind", "bounced", "--address", "ann.rivera")
    assert code == 0, out
    assert (
        "ann.rivera@dead.people.net" in out
        and "5.1.1" in out
        and "user unknown: mailbox unavailable" in out
    )
    assert "bo.chen" not in out
    code, out = site.app.cli("bounces", "--read")
    assert code == 0 and re.search(r"Read \d+ report\(s\)", out), out
    code, out = site.app.cli("bounces", "--kind", "nonsense")
    assert code == 2 and "invalid choice" in out
    code, out = site.app.cli("status")
    assert code == 0 and "bounced" in out and BOX_PASSWORD not in out


@pytest.fixture
def playwright():
    unavailable(chromium_missing())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def test_screenshot_of_the_bounces_page(site, playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(site.app.url("/outbox/bounces"))
        page.fill("input[name=email]", ADMIN)
        page.fill("input[name=password]", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url("**/outbox/bounces")
        assert page.locator("tr.bounce").count() >= 3
        page.screenshot(path=os.path.join(artifacts_dir(), "bounces.png"), full_page=True)
    finally:
        browser.close()
