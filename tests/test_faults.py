"""Every SMTP fault ends in its class with its reason on the row and in the
attempt log, nothing escapes process_outbox, and the message still goes out
once the fault is gone (so no fault loses mail).

Classes: held (the settings or the server: attempts untouched), retry (transient: queued
again with backoff), failed (permanent), sent with refused recipients.
Connection-level faults run on SQLite; the reply-code faults, whose outcome
is written through every column the store has, run on all three databases.
"""

import datetime
import json

import pytest
from faultserver import DROP, STALL, FaultServer
from helpers import attachment, free_port

from s3outbox.delivery.engine import Pass
from s3outbox.delivery.store import utcnow

sqlite_only = pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)


def _closed_port():
    return "127.0.0.1:%d" % free_port()


def _hold(mail):
    """The hold of mail's current settings, or None."""
    return mail.store.get_hold(Pass(mail).key)


def _pass(mail, db, to=("ann@people.net",)):
    """Queue one message, run one pass; return (counts, row, attempt rows)."""
    assert mail.send(list(to), "Fault", "Body") is True, mail.error
    db.commit()
    counts = mail.process_outbox()
    assert "error" not in counts, counts  # the pass itself did not break
    store = mail.store
    row = db(store.outbox).select().first()
    attempts = db(store.attempt.outbox_id == row.id).select(orderby=store.attempt.id)
    return counts, row, attempts


def _check(expected, counts, row, attempts, reason):
    """Assert class, counts and the recorded reason for one faulted message."""
    now = utcnow()
    assert counts[expected] == 1, counts
    assert sum(counts[k] for k in ("sent", "retry", "failed", "held")) == 1, counts
    assert reason in (row.last_error or ""), row.last_error
    assert len(attempts) == 1 and reason in (attempts[0].error or ""), [a.error for a in attempts]
    if expected == "held":
        assert (row.status, row.attempts, attempts[0].outcome) == ("held", 0, "held")
    elif expected == "retry":
        assert (row.status, row.attempts, attempts[0].outcome) == ("queued", 1, "retry")
        assert row.next_attempt_on > now
    elif expected == "failed":
        assert (row.status, row.attempts, attempts[0].outcome) == ("failed", 1, "failed")
    assert row.lease_owner is None and row.lease_until is None


def _recovers(mail, db, row):
    """Make the row due again and run a pass: the repaired path delivers it."""
    store = mail.store
    db(store.outbox.id == row.id).update(next_attempt_on=datetime.datetime(2000, 1, 1))
    db.commit()
    counts = mail.process_outbox()
    assert counts["sent"] == 1, counts
    assert db(store.outbox.id == row.id).select().first().status == "sent"


# ---------------------------------------------------------------- connection
CONNECTION_FAULTS = [
    # (name, script, extensions, settings, class, reason in last_error)
    ("421 on connect", {"greeting": "421 4.3.2 too busy"}, (), {}, "held", "421 4.3.2 too busy"),
    ("STARTTLS not offered", {}, ("8BITMIME",), {"tls": True}, "held", "does not offer STARTTLS"),
    (
        "AUTH refused 535",
        {"AUTH": "535 5.7.8 credentials rejected"},
        ("AUTH PLAIN",),
        {"login": "robot:s3cr3t-pw"},
        "held",
        "535 5.7.8 credentials rejected",
    ),
    (
        "sender refused 553",
        {"MAIL": "553 5.7.1 sender not allowed"},
        (),
        {},
        "held",
        "553 5.7.1 sender not allowed",
    ),
    ("dropped after MAIL", {"RCPT": DROP}, (), {}, "retry", "connection dropped"),
    ("dropped after RCPT", {"DATA": DROP}, (), {}, "retry", "connection dropped"),
    ("dropped in the middle of DATA", {"BODY": DROP}, (), {}, "retry", "connection dropped"),
    ("stall on MAIL until the timeout", {"MAIL": STALL}, (), {"timeout": 1}, "retry", "timed out"),
    ("stall on the greeting", {"greeting": STALL}, (), {"timeout": 1}, "held", "timed out"),
    ("no reply after the message", {"END": STALL}, (), {"timeout": 1}, "retry", "timed out"),
]


@sqlite_only
@pytest.mark.parametrize(
    "name,script,extensions,changes,expected,reason",
    CONNECTION_FAULTS,
    ids=[f[0] for f in CONNECTION_FAULTS],
)
def test_connection_fault(mail, db, name, script, extensions, changes, expected, reason):
    with FaultServer(script, extensions) as server:
        mail.settings.server = server.server
        for key, value in changes.items():
            mail.settings[key] = value
        counts, row, attempts = _pass(mail, db)
        _check(expected, counts, row, attempts, reason)
        assert server.messages == []  # nothing was accepted, so nothing is sent
        if "login" in changes:  # never a password in the outbox
            assert "s3cr3t" not in row.last_error + attempts[0].error
        # The fault clears (or the admin repairs the settings): the mail goes out.
        server.script.clear()
        server.extensions = ["8BITMIME", "AUTH PLAIN"]
        if expected == "held":  # an edit of the settings releases held mail
            mail.settings.tls = False
            mail.settings.sender = "Repaired <repaired@outbox.localhost>"
        _recovers(mail, db, row)
        assert len(server.messages) == 1
        assert server.messages[0][1] == ["ann@people.net"]


@sqlite_only
@pytest.mark.parametrize(
    "server,reason",
    [
        (_closed_port(), "connection refused"),
        ("mail.nowhere.invalid:25", "does not resolve"),
    ],
    ids=["connection refused", "host does not resolve"],
)
def test_unreachable_server_holds(mail, db, sink, server, reason):
    mail.settings.server = server
    counts, row, attempts = _pass(mail, db)
    _check("held", counts, row, attempts, reason)
    # The admin repairs the server: held mail is released and sent, no action.
    mail.settings.server = sink.server
    counts = mail.process_outbox()
    assert (counts["released"], counts["sent"]) == (1, 1), counts
    assert sink.count == 1


# ---------------------------------------------------------------- reply codes
REPLY_FAULTS = [
    (
        "451 on RCPT",
        {"RCPT": {"ann@people.net": "451 4.3.0 try later"}},
        "retry",
        "451 4.3.0 try later",
    ),
    (
        "452 on RCPT",
        {"RCPT": {"ann@people.net": "452 4.2.2 mailbox full"}},
        "retry",
        "452 4.2.2 mailbox full",
    ),
    ("451 on DATA", {"DATA": "451 4.3.0 local error"}, "retry", "451 4.3.0 local error"),
    ("452 on DATA", {"DATA": "452 4.3.1 out of storage"}, "retry", "452 4.3.1 out of storage"),
    (
        "550 on RCPT",
        {"RCPT": {"ann@people.net": "550 5.1.1 no such user"}},
        "failed",
        "550 5.1.1 no such user",
    ),
    (
        "553 on RCPT",
        {"RCPT": {"ann@people.net": "553 5.1.3 bad address syntax"}},
        "failed",
        "553 5.1.3 bad address syntax",
    ),
    ("554 on DATA", {"DATA": "554 5.6.0 message refused"}, "failed", "554 5.6.0 message refused"),
]


@pytest.mark.parametrize(
    "name,script,expected,reason", REPLY_FAULTS, ids=[f[0] for f in REPLY_FAULTS]
)
def test_reply_code(mail, db, sink, name, script, expected, reason):
    sink.script.update(script)
    counts, row, attempts = _pass(mail, db)
    _check(expected, counts, row, attempts, reason)
    assert sink.count == 0
    if expected == "retry":
        sink.script.clear()
        _recovers(mail, db, row)
        assert sink.count == 1


def test_some_recipients_refused(mail, db, sink):
    sink.script["RCPT"] = {
        "bob@people.net": "550 5.1.1 no such user",
        "cy@people.net": "452 4.2.2 mailbox full",
    }
    counts, row, attempts = _pass(
        mail, db, to=("ann@people.net", "bob@people.net", "cy@people.net")
    )
    assert (counts["sent"], counts["refused"], counts["deferred"]) == (1, 1, 1), counts
    # The 5xx is final; the 4xx recipient is delivered again, on its own.
    assert row.status == "queued" and row.attempts == 1
    assert json.loads(row.refused) == {"bob@people.net": "550 5.1.1 no such user"}
    assert json.loads(row.deferred_rcpts) == {"cy@people.net": "452 4.2.2 mailbox full"}
    assert "bob@people.net" in row.last_error and "cy@people.net" in row.last_error
    assert attempts[0].outcome == "sent" and "550 5.1.1" in attempts[0].error
    assert [m[1] for m in sink.messages] == [["ann@people.net"]]
    sink.script.clear()
    _recovers(mail, db, row)
    assert [m[1] for m in sink.messages] == [["ann@people.net"], ["cy@people.net"]]
    row = db(mail.store.outbox.id == row.id).select().first()
    assert row.deferred_rcpts is None and set(json.loads(row.refused)) == {"bob@people.net"}


def test_all_recipients_refused_mixed_codes_is_transient(mail, db, sink):
    """One 4xx among the refusals means a later try may still reach someone."""
    sink.script["RCPT"] = {
        "ann@people.net": "550 5.1.1 no such user",
        "bob@people.net": "451 4.3.0 try later",
    }
    counts, row, attempts = _pass(mail, db, to=("ann@people.net", "bob@people.net"))
    _check("retry", counts, row, attempts, "451 4.3.0 try later")
    assert "550 5.1.1" in row.last_error
    # the 5xx stays final: the retry goes to bob only
    assert json.loads(row.refused) == {"ann@people.net": "550 5.1.1 no such user"}
    assert list(json.loads(row.deferred_rcpts)) == ["bob@people.net"]
    sink.script.clear()
    _recovers(mail, db, row)
    assert [m[1] for m in sink.messages] == [["bob@people.net"]]


@sqlite_only
def test_one_pass_with_every_outcome(mail, db, sink):
    """Faults on some messages do not disturb the others in the same batch."""
    sink.script["RCPT"] = {
        "gone@people.net": "550 5.1.1 no such user",
        "full@people.net": "452 4.2.2 mailbox full",
    }
    for to in (
        "a@people.net",
        "gone@people.net",
        "b@people.net",
        "full@people.net",
        "c@people.net",
    ):
        assert mail.send(to, "Batch", "Body"), mail.error
    db.commit()
    counts = mail.process_outbox()
    assert (counts["sent"], counts["failed"], counts["retry"]) == (3, 1, 1), counts
    status = {r.address: r.status for r in db(mail.store.outbox).select()}
    assert status == {
        "a@people.net": "sent",
        "gone@people.net": "failed",
        "b@people.net": "sent",
        "full@people.net": "queued",
        "c@people.net": "sent",
    }
    assert sorted(m[1][0] for m in sink.messages) == [
        "a@people.net",
        "b@people.net",
        "c@people.net",
    ]


@sqlite_only
def test_sender_refused_holds_the_queue_until_the_settings_change(mail, db, sink):
    """The configured sender refused: one attempt, the rest held, then released."""
    sink.script["MAIL"] = {"outbox@outbox.localhost": "553 5.7.1 not your domain"}
    for to in ("a@people.net", "b@people.net", "c@people.net"):
        assert mail.send(to, "Held", "Body"), mail.error
    db.commit()
    counts = mail.process_outbox()
    assert (counts["held"], counts["sent"]) == (3, 0), counts
    assert _hold(mail).reason.startswith("sender")
    mail.settings.sender = "Outbox <post@outbox.localhost>"
    counts = mail.process_outbox()
    assert (counts["released"], counts["sent"]) == (3, 3), counts


@sqlite_only
def test_refused_sender_given_to_send_fails_only_that_message(mail, db, sink):
    sink.script["MAIL"] = {"boss@elsewhere.net": "553 5.7.1 not allowed to send as"}
    assert mail.send("a@people.net", "Own", "Body", sender="boss@elsewhere.net")
    assert mail.send("b@people.net", "Site", "Body")
    db.commit()
    counts = mail.process_outbox()
    assert (counts["failed"], counts["sent"], counts["held"]) == (1, 1, 0), counts
    row = db(mail.store.outbox.address == "a@people.net").select().first()
    assert row.status == "failed" and "553 5.7.1" in row.last_error
    assert _hold(mail) is None


# ------------------------------------------------------------------- poison
POISON = [
    # (how the stored row is broken, changes to the outbox row, to the attachment)
    ("body is not JSON", dict(body="{not json"), None),
    ("body lacks its keys", dict(body='{"to":["x@people.net"]}'), None),
    ("body has the wrong types", dict(body='{"to":7,"cc":null,"bcc":[]}'), None),
    ("attachment lost its name", dict(attachment_count=1), dict(filename=None)),
    ("attachment type is garbage", dict(attachment_count=1), dict(content_type="garbage")),
]


def test_poison_messages_fail_alone(mail, db, sink):
    """Rows whose stored data breaks the MIME builder fail with a reason; the
    good mail around them in the same batch goes out."""
    store = mail.store
    poisoned = {}
    for i, (what, row_changes, part_changes) in enumerate(POISON):
        assert mail.send("good%d@people.net" % i, "Good", "Fine")
        assert mail.send(
            "bad%d@people.net" % i, "Bad", "Broken", attachments=[attachment("a.txt", b"data")]
        )
        poisoned[mail.result["id"]] = what
        db(store.outbox.id == mail.result["id"]).update(**row_changes)
        if part_changes:
            db(store.attachment.outbox_id == mail.result["id"]).update(**part_changes)
    db.commit()
    counts = mail.process_outbox()
    assert "error" not in counts, counts
    assert (counts["sent"], counts["failed"]) == (len(POISON), len(POISON)), counts
    for row in db(store.outbox).select():
        if row.id in poisoned:
            assert row.status == "failed" and row.last_error, (poisoned[row.id], row)
            assert row.last_error.startswith(
                ("cannot read the stored message: ", "cannot build the message: ")
            )
            tried = db(store.attempt.outbox_id == row.id).select().first()
            assert tried.outcome == "failed" and tried.error == row.last_error
        else:
            assert row.status == "sent", row
    assert sorted(m[1][0] for m in sink.messages) == [
        "good%d@people.net" % i for i in range(len(POISON))
    ]
