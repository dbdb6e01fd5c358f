"""No recipient a server defers is dropped (issue 19).

Against the fault server, pipelined (with DATA and with BDAT) and not:
a server that takes 100 recipients a transaction and answers 452 4.5.3 to
the rest gets them in the next transactions of the same session; a server
that greylists one recipient (450) beside a good one gets the message again
later, only for that recipient, with the same Message-ID; a 5xx stays final;
a recipient deferred for good past max_attempts is refused with the reason.
Two workers racing over a deferred delivery send it once.
"""

import datetime
import email
import json

import pytest
from faultserver import FaultServer

from s3outbox.admin.outbox import OutboxAdmin
from s3outbox.delivery.store import utcnow

MODES = pytest.mark.parametrize(
    "extensions",
    [
        ("8BITMIME",),
        ("8BITMIME", "PIPELINING"),
        ("8BITMIME", "PIPELINING", "CHUNKING"),
    ],
    ids=["plain", "pipelined", "pipelined+bdat"],
)
GREY = "450 4.2.0 greylisted, try again later"


def _row(mail, db):
    return db(mail.store.outbox).select().first()


def _due(mail, db):
    """Make every queued message due now (skip the backoff)."""
    o = mail.store.outbox
    db(o.status == "queued").update(next_attempt_on=datetime.datetime(2000, 1, 1))
    db.commit()


def _ids(server):
    return {email.message_from_bytes(data)["Message-ID"] for _, _, data in server.messages}


@MODES
def test_452_after_100_recipients_the_rest_go_in_the_next_transactions(mail, db, extensions):
    to = ["r%03d@people.net" % i for i in range(250)]
    with FaultServer({}, extensions, max_rcpts=100) as server:
        mail.settings.server = server.server
        assert mail.send(to, "Many", "Body") is True, mail.error
        db.commit()
        counts = mail.process_outbox()
        assert (counts["sent"], counts["refused"], counts["deferred"]) == (1, 0, 0), counts
        assert [len(m[1]) for m in server.messages] == [100, 100, 50]
        assert sorted(r for m in server.messages for r in m[1]) == to
        assert len(_ids(server)) == 1 and server.connections == 1
    row = _row(mail, db)
    assert (row.status, row.refused, row.deferred_rcpts) == ("sent", None, None)


@MODES
def test_452_limit_with_a_greylisted_recipient_among_the_rest(mail, db, extensions):
    """The limit and greylisting together: every recipient gets one copy."""
    to = ["r%03d@people.net" % i for i in range(120)]
    with FaultServer({"RCPT": {"r110@people.net": GREY}}, extensions, max_rcpts=100) as server:
        mail.settings.server = server.server
        assert mail.send(to, "Many", "Body") is True, mail.error
        db.commit()
        counts = mail.process_outbox()
        assert counts["deferred"] == 1, counts
        assert json.loads(_row(mail, db).deferred_rcpts) == {"r110@people.net": GREY}
        server.script.clear()
        _due(mail, db)
        assert mail.process_outbox()["sent"] == 1
        got = sorted(r for m in server.messages for r in m[1])
        assert got == to and len(_ids(server)) == 1
    assert _row(mail, db).status == "sent"


@MODES
def test_greylisted_recipient_gets_it_later_alone(mail, db, extensions):
    with FaultServer({"RCPT": {"grey@people.net": GREY}}, extensions) as server:
        mail.settings.server = server.server
        assert mail.send(["ann@people.net", "grey@people.net"], "Hi", "Body") is True
        db.commit()
        counts = mail.process_outbox()
        assert (counts["sent"], counts["deferred"]) == (1, 1), counts
        row = _row(mail, db)
        assert (row.status, row.attempts) == ("queued", 1)
        assert json.loads(row.deferred_rcpts) == {"grey@people.net": GREY}
        assert row.next_attempt_on > utcnow() and row.sent_on
        shown = OutboxAdmin(mail).message(row.id)["recipients"]
        assert shown == [
            ("ann@people.net", "accepted", None),
            ("grey@people.net", "deferred", GREY),
        ]
        # not due yet: nothing is sent again
        assert mail.process_outbox()["sent"] == 0
        server.script.clear()  # the greylisting period is over
        _due(mail, db)
        assert mail.process_outbox()["sent"] == 1
        assert [m[1] for m in server.messages] == [["ann@people.net"], ["grey@people.net"]]
        assert len(_ids(server)) == 1  # the same message: same Message-ID
    row = _row(mail, db)
    assert (row.status, row.deferred_rcpts, row.refused, row.attempts) == ("sent", None, None, 2)


@MODES
def test_a_deferred_recipient_is_refused_after_max_attempts(mail, db, extensions):
    mail.settings.max_attempts = "3"  # text, as a config file gives it
    script = {"RCPT": {"grey@people.net": GREY, "gone@people.net": "550 5.1.1 no such user"}}
    with FaultServer(script, extensions) as server:
        mail.settings.server = server.server
        assert (
            mail.send(["ann@people.net", "grey@people.net", "gone@people.net"], "Hi", "Body")
            is True
        )
        db.commit()
        for _ in range(3):
            mail.process_outbox()
            _due(mail, db)
        assert [m[1] for m in server.messages] == [["ann@people.net"]]
        # grey was tried alone each time after the first
        rcpts = [c for c in server.commands if c.upper().startswith("RCPT")]
        assert len(rcpts) == 3 + 2
    row = _row(mail, db)
    assert (row.status, row.deferred_rcpts, row.attempts) == ("sent", None, 3)
    refused = json.loads(row.refused)
    assert refused["gone@people.net"] == "550 5.1.1 no such user"
    assert "gave up after 3 attempts" in refused["grey@people.net"]
    assert GREY in refused["grey@people.net"]


@MODES
def test_all_of_the_rest_refused_at_data_are_deferred(mail, db, extensions):
    """The next transaction's DATA gets a 451: its recipients wait, the first
    transaction's keep their copy."""
    to = ["r%d@people.net" % i for i in range(5)]
    with FaultServer({}, extensions, max_rcpts=3) as server:
        mail.settings.server = server.server
        server.script["END"] = {"r3@people.net": "451 4.3.0 local error"}
        assert mail.send(to, "Hi", "Body") is True
        db.commit()
        counts = mail.process_outbox()
        assert counts["deferred"] == 2, counts
        assert [m[1] for m in server.messages] == [to[:3]]
        assert set(json.loads(_row(mail, db).deferred_rcpts)) == set(to[3:])
        server.script.clear()
        _due(mail, db)
        assert mail.process_outbox()["sent"] == 1
        assert [m[1] for m in server.messages] == [to[:3], to[3:]]


def test_two_workers_send_a_deferred_delivery_once(make_db, tablename):
    """The deferred recipients are a delivery of the row: claimed with a
    lease like any message, so racing workers send it once."""
    from s3outbox import MailS3

    with FaultServer({"RCPT": {"grey@people.net": GREY}}) as server:
        mails = []
        for name in ("w1", "w2"):
            m = MailS3(
                make_db(),
                server=server.server,
                tls=False,
                sender="Outbox <outbox@outbox.localhost>",
                tablename=tablename,
            )
            m.settings.sessions, m.settings.worker_name = 1, name
            mails.append(m)
        assert mails[0].send(["ann@people.net", "grey@people.net"], "Hi", "Body")
        mails[0].db.commit()
        mails[0].process_outbox()
        server.script.clear()
        _due(mails[0], mails[0].db)
        import threading

        threads = [threading.Thread(target=m.process_outbox) for m in mails]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r for m in server.messages for r in m[1]) == [
            "ann@people.net",
            "grey@people.net",
        ]
