# -*- coding: utf-8 -*-
"""Bounces end to end: a real web2py server and scheduler worker, whose
delivery task sends through a real Postfix (tests/postfix.py) and reads the
bounce mailbox in a real Dovecot (tests/dovecot.py) every 2 seconds, both
configured only through private/appconfig.ini. The admin sees the bounced
addresses on the dashboard and on the command line; Chromium takes the
screenshot kept as docs/bounces.png."""

import os
import re

import pytest
from gluon.storage import Storage

from admin_support import CHROMIUM, CHROMIUM_ARGS, PASSWORD, AdminApp, chromium_missing
from conftest import unavailable
from dovecot import PASSWORD as BOX_PASSWORD, Dovecot, unusable as no_dovecot
from helpers import wait_for
from postfix import Postfix, unusable as no_postfix
from s3outbox import returnpath

pytestmark = pytest.mark.skipif(bool(no_postfix() or no_dovecot()),
                                reason=str(no_postfix() or no_dovecot()))
ADMIN = "boss@people.net"
DEAD = ["ann.rivera@dead.people.net", "bo.chen@dead.people.net",
        "cy.okafor@dead.people.net"]
HOSTILE = "<script>alert(1)</script> \u202eevil"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with Dovecot() as box, Postfix(mailbox=box) as relay:
        url = box.url("imaps").replace("%", "%%")  # appconfig.ini: % is written %%
        app = AdminApp(tmp_path_factory.mktemp("bounces") / "rt", smtp=relay.server,
                       settings={("outbox", "bounce_address"): "bounces@bounce.people.net",
                                 ("outbox", "bounce_mailbox"): url,
                                 ("outbox", "bounce_interval"): "2",
                                 ("smtp", "self_signed_certificate"): "true"})
        with app:
            admin = app.register(ADMIN)
            mail = app.mail(server=relay.server)
            ids = {}
            for to in DEAD + ["dan@people.net", "eve@people.net"]:
                assert mail.send(to=to, subject="Flood warning: move uphill",
                                 message="The river is rising.")
                ids[to] = int(mail.result["id"])
            app.db.commit()
            done = wait_for(lambda: _statuses(app, ids, "bounced") == set(DEAD),
                            timeout=180)
            assert done, app.log("worker")[-5000:]
            yield Storage(app=app, admin=admin, ids=ids, mail=mail, box=box)
            assert not app.errors(), app.errors()


def _statuses(app, ids, status):
    app.db.commit()
    o = app.db.msg_outbox
    return {to for to, i in ids.items() if o[i].status == status}


def test_the_worker_marks_the_bounced_and_only_them(site):
    assert _statuses(site.app, site.ids, "sent") == {"dan@people.net", "eve@people.net"}
    o = site.app.db.msg_outbox
    for to in DEAD:
        row = o[site.ids[to]]
        assert "5.1.1" in row.last_error and "user unknown: mailbox unavailable" in \
            row.last_error
    assert wait_for(lambda: site.box.count() == 0, timeout=30)  # removed once matched


def test_dashboard_lists_and_filters_bounces(site):
    app, admin = site.app, site.admin
    _hostile_report(site)
    page = admin.get(app.url("/outbox/index")).text
    assert re.search(r'<b>4</b>bounced', page), page  # the status card
    assert 'id="bounces-link"' in page and "Bounces (4)" in page
    assert "return path bounces@bounce.people.net (+TOKEN)" in page
    r = admin.get(app.url("/outbox/bounces"))
    assert r.status_code == 200
    for to in DEAD:
        assert to in r.text
    assert r.text.count("user unknown: mailbox unavailable") == 3
    assert "&lt;script&gt;alert(1)&lt;/script&gt; evil" in r.text  # no markup, no RLO
    assert "<script>alert" not in r.text and "\u202e" not in r.text
    rows = re.findall(r'<tr class="bounce">', admin.get(app.url(
        "/outbox/bounces?address=BO.CHEN&kind=bounced")).text)
    assert len(rows) == 1
    r = admin.get(app.url("/outbox/bounces?kind=delayed"))
    assert "No delivery reports of kind delayed" in r.text
    r = admin.get(app.url("/outbox/bounces?kind=nonsense"))
    assert r.status_code == 400 and "kind must be one of bounced, delayed" in r.text
    r = admin.get(app.url("/outbox/messages?status=bounced"))
    assert len(re.findall(r'<tr id="msg-', r.text)) == 4
    for text in (page, r.text, app.log("worker"), app.log("web")):
        assert BOX_PASSWORD not in text and "wo%25rd" not in text


def _hostile_report(site):
    """A report with a valid TOKEN whose diagnostic holds markup and a
    right-to-left override: shown as text, never as HTML, never a ticket."""
    mail, row_id = site.mail, site.ids["eve@people.net"]
    row = mail.store.outbox[row_id]
    to = returnpath.envelope("bounces@bounce.people.net", returnpath.token(
        returnpath.key(mail.store), row_id, row.message_id))
    report = ("From: MAILER-DAEMON@relay.people.net\r\nTo: %s\r\nSubject: Undelivered\r\n"
              "Content-Type: multipart/report; report-type=delivery-status; boundary=B"
              "\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
              "Reporting-MTA: dns; relay\r\n\r\nFinal-Recipient: rfc822; eve@people.net"
              "\r\nAction: failed\r\nStatus: 5.2.2\r\nDiagnostic-Code: smtp; 552 5.2.2 %s"
              "\r\n\r\n--B--\r\n" % (to, HOSTILE)).encode("utf-8")
    site.box.append([report])
    assert wait_for(lambda: _statuses(site.app, site.ids, "bounced") ==
                    set(DEAD + ["eve@people.net"]), timeout=60), site.app.log("worker")


def test_command_line_bounces(site):
    code, out = site.app.cli("bounces", "--kind", "bounced", "--address", "ann.rivera")
    assert code == 0, out
    assert "ann.rivera@dead.people.net" in out and "5.1.1" in out and \
        "user unknown: mailbox unavailable" in out
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
        os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
        page.screenshot(path=os.path.join(ROOT, "docs", "bounces.png"), full_page=True)
    finally:
        browser.close()
