"""The transports through MailS3: web2py's ``server='logging'`` (to the log
or to a file) and a site's own transport in ``settings.transport``."""

import logging

import pytest

from s3outbox.transport.base import Kind, Outcome, memory

pytestmark = pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)


def _status(mail, db):
    return [r.status for r in db(mail.store.outbox).select(orderby=mail.store.outbox.id)]


def test_logging_server_logs_the_message(mail, db, caplog):
    mail.settings.server = "logging"
    assert mail.send(
        to="ann@people.net",
        subject="Verify",
        message="Click https://example.net/verify?key=" + "k" * 80,
    )
    db.commit()
    with caplog.at_level(logging.WARNING, "s3outbox"):
        counts = mail.process_outbox()
    assert counts["sent"] == 1 and _status(mail, db) == ["sent"]
    assert "email not sent" in caplog.text and "Subject: Verify" in caplog.text
    assert "To: ann@people.net" in caplog.text
    assert "key=" + "k" * 80 in caplog.text  # decoded: the link is whole


def test_logging_to_a_file_and_direct_mail(mail, db, tmp_path):
    path = tmp_path / "mail.log"
    mail.settings.server = "logging:%s" % path
    assert mail.send_direct_email(to="bob@people.net", subject="Direct", message="Hi")
    assert mail.send(to="ann@people.net", subject="Queued", message="Hello")
    db.commit()
    assert mail.process_outbox()["sent"] == 1
    text = path.read_text()
    assert text.count("email not sent") == 2
    assert "Subject: Direct" in text and "Subject: Queued" in text


def test_logging_to_a_file_that_cannot_be_written_holds(mail, db, tmp_path):
    mail.settings.server = "logging:%s" % (tmp_path / "no-such-folder" / "mail.log")
    assert mail.send(to="ann@people.net", subject="Queued", message="Hello")
    db.commit()
    counts = mail.process_outbox()
    assert counts["held"] == 1 and _status(mail, db) == ["held"]
    row = db(mail.store.outbox).select().first()
    assert "cannot write the mail log" in row.last_error


def test_logging_server_still_needs_a_sender(mail, db):
    mail.settings.server = "logging"
    mail.settings.sender = "you@example.com"
    assert mail.send_direct_email(to="bob@people.net", message="Hi") is False
    assert "example address" in mail.error


def test_a_sites_own_transport(mail, db):
    """What an HTTP-API transport does: settings.transport makes sessions;
    outcomes it reports are recorded as SMTP's are."""

    def on_send(sender, recipients, data):
        if recipients == ["nobody@people.net"]:
            return Outcome(Kind.PERMANENT, 404, "no such mailbox")

    transport = memory(on_send=on_send)
    mail.settings.transport = transport
    mail.settings.server = None  # no SMTP server needed
    assert mail.send(to="ann@people.net", subject="One", message="1")
    assert mail.send(to="nobody@people.net", subject="Two", message="2")
    db.commit()
    counts = mail.process_outbox()
    assert (counts["sent"], counts["failed"]) == (1, 1)
    assert _status(mail, db) == ["sent", "failed"]
    ((sender, recipients, data),) = transport.sent
    assert recipients == ["ann@people.net"] and b"Subject: One" in data


def test_a_sites_transport_that_gives_no_reason_still_holds(mail, db):
    """An Outcome's error text is optional: a site's transport that cannot
    open (Kind.CONFIG, no text) holds the mail as one with a reason does, and
    mail queued then is held without a connection until the probe is due."""
    mail.settings.transport = memory(on_open=lambda: Outcome(Kind.CONFIG))
    mail.settings.server = None
    assert mail.send(to="ann@people.net", subject="One", message="1")
    db.commit()
    assert mail.process_outbox()["held"] == 1
    assert mail.send(to="bob@people.net", subject="Two", message="2")
    db.commit()
    counts = mail.process_outbox()
    assert (counts["held"], counts["connections"]) == (1, 0)
    assert _status(mail, db) == ["held", "held"]
    assert all(r.last_error for r in db(mail.store.outbox).select())
