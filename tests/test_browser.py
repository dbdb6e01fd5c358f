"""A real browser on the dashboard: Debian's Chromium, driven by Playwright.

The site runs with its scheduler worker. The worker fails a message the SMTP
sink refuses, then the admin breaks the sender and the worker holds new mail;
the admin logs in, sees the hold banner that says what to edit, and retries
the failed message. The screenshot is kept as tests/artifacts/dashboard.png.
"""

import os

import pytest
from admin_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    AdminApp,
    artifacts_dir,
    chromium_missing,
    seed,
)
from conftest import unavailable
from helpers import wait_for

from s3outbox.delivery.store import utcnow

ADMIN = "boss@people.net"


@pytest.fixture
def playwright():
    unavailable(chromium_missing())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def test_admin_sees_hold_and_retries_in_chromium(tmp_path, sink, playwright):
    with AdminApp(tmp_path / "rt", smtp=sink.server) as app:
        app.register(ADMIN)
        db = app.db
        # a day of history for the chart
        seed(db, "msg_outbox", 400, utcnow(), days=1, mix=(("sent", 0.93), ("failed", 0.07)))
        mail = app.mail(server=sink.server)
        outbox = mail.store.outbox

        def status(row_id):
            db.commit()  # end the read transaction: see the worker's writes
            return outbox[row_id].status

        sink.script["RCPT"] = {"gone@people.net": "550 5.1.1 no such user"}
        assert mail.send(to="gone@people.net", subject="Welcome", message="hi")
        failed = int(mail.result["id"])
        db.commit()
        assert wait_for(lambda: status(failed) == "failed", timeout=90), app.log("worker")

        app.configure("smtp", "sender", "you@gmail.com")
        held = []
        for who in ("ann@people.net", "bob@people.net"):
            assert mail.send(to=who, subject="Your account", message="hello")
            held.append(int(mail.result["id"]))
        db.commit()
        assert wait_for(lambda: all(status(i) == "held" for i in held), timeout=90), app.log(
            "worker"
        )
        app.stop_worker()  # from here on only the admin changes rows

        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(app.url("/outbox/index"))
            assert "/default/user/login" in page.url
            page.fill("input[name=email]", ADMIN)
            page.fill("input[name=password]", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url("**/outbox/index")
            banner = page.locator("#held-banner")
            assert banner.is_visible()
            text = banner.inner_text()
            assert "Outgoing mail is held (2 messages)" in text
            assert "sender 'you@gmail.com' is the unedited example address" in text
            assert "[smtp] sender" in text
            assert page.locator("svg.chart rect.bar-sent").count() > 0
            page.screenshot(path=os.path.join(artifacts_dir(), "dashboard.png"), full_page=True)

            page.click("text=Failed messages")
            page.wait_for_url("**/outbox/messages?status=failed")
            page.check("#msg-%d input[name=ids]" % failed)
            page.click("#retry-selected")
            page.wait_for_load_state()
            assert page.locator(".flash").inner_text() == "1 message queued for delivery now."
            assert page.locator("#msg-%d" % failed).count() == 0  # no longer failed
        finally:
            browser.close()
        assert status(failed) == "queued"
        assert outbox[failed].attempts == 0
        assert not app.errors()
