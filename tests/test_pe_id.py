"""send(pe_id=N): the address comes from Sahana's pr_contact when the message
is delivered: the first EMAIL contact by priority that is not deleted."""

import datetime
import email
import email.policy
import io
import os

import pytest
from pydal import Field

from s3outbox.delivery.store import utcnow


@pytest.fixture
def contacts(db, tablename):
    """A Sahana-like pr_contact on ``db``. The SQL table gets a per-test name
    (rname) so that runs sharing one PostgreSQL or MariaDB never collide."""
    table = db.define_table(
        "pr_contact",
        Field("pe_id", "integer"),
        Field("contact_method", length=32),
        Field("value", length=255),
        Field("priority", "integer"),
        Field("deleted", "boolean", default=False),
        rname="%s_contact" % tablename,
    )
    db.commit()
    yield table
    db.rollback()
    db.executesql("DROP TABLE IF EXISTS %s_contact" % tablename)
    db.commit()


def add(table, pe_id, value, method="EMAIL", priority=1, deleted=False):
    table.insert(
        pe_id=pe_id, contact_method=method, value=value, priority=priority, deleted=deleted
    )


def row_of(mail, db, message_id):
    return db(mail.store.outbox.message_id == message_id).select().first()


def test_resolves_first_email_contact_by_priority(contacts, mail, db, sink):
    add(contacts, 7, "+15551234567", method="SMS", priority=0)
    add(contacts, 7, "gone@people.net", priority=1, deleted=True)
    add(contacts, 7, "later@people.net", priority=3)
    add(contacts, 7, "chosen@people.net", priority=2)
    add(contacts, 8, "other@people.net", priority=1)
    assert mail.send(pe_id=7, subject="Hi", message="Body") is True, mail.error
    queued = row_of(mail, db, mail.result["message_id"])
    assert queued.pe_id == 7 and queued.address is None
    db.commit()
    assert mail.process_outbox()["sent"] == 1
    _, rcpts, data = sink.messages[-1]
    assert rcpts == ["chosen@people.net"]
    assert b"To: chosen@people.net" in data
    row = row_of(mail, db, queued.message_id)
    assert (row.status, row.address, row.pe_id) == ("sent", "chosen@people.net", 7)


def test_row_records_the_address_also_when_delivery_fails(contacts, mail, db, sink):
    """The address a pe_id resolved to is on the row whatever the outcome."""
    add(contacts, 4, "Ann Lee <gone@people.net>")
    sink.script["RCPT"] = {"gone@people.net": "550 5.1.1 no such user"}
    assert mail.send(pe_id=4, subject="Hi", message="Body") is True, mail.error
    db.commit()
    assert mail.process_outbox()["failed"] == 1
    row = row_of(mail, db, mail.result["message_id"])
    assert (row.status, row.address) == ("failed", "gone@people.net")


def test_address_is_looked_up_at_delivery_not_at_send(contacts, mail, db, sink):
    assert mail.send(pe_id=9, subject="Hi", message="Body") is True
    message_id = mail.result["message_id"]
    add(contacts, 9, "old@people.net", priority=1)
    db.commit()
    # the contact changes after queueing: the new address wins
    db(contacts.value == "old@people.net").update(deleted=True)
    add(contacts, 9, "new@people.net", priority=5)
    db.commit()
    assert mail.process_outbox()["sent"] == 1
    assert sink.messages[-1][1] == ["new@people.net"]
    assert row_of(mail, db, message_id).status == "sent"


def test_retry_of_a_pe_id_row_looks_its_address_up_again(contacts, mail, db, sink):
    """A retried row carries the address recorded by its first attempt; the
    retry must still find (and may change) the contact, not fail for want of one."""
    add(contacts, 5, "first@people.net")
    sink.script["DATA"] = "451 4.3.0 try later"
    assert mail.send(pe_id=5, subject="Hi", message="Body") is True
    message_id = mail.result["message_id"]
    db.commit()
    assert mail.process_outbox()["retry"] == 1
    assert row_of(mail, db, message_id).address == "first@people.net"
    del sink.script["DATA"]
    db(contacts.pe_id == 5).update(value="second@people.net")
    db(mail.store.outbox.message_id == message_id).update(
        next_attempt_on=row_of(mail, db, message_id).created_on
    )
    db.commit()
    assert mail.process_outbox()["sent"] == 1
    row = row_of(mail, db, message_id)
    assert (row.status, row.address) == ("sent", "second@people.net")
    assert sink.messages[-1][1] == ["second@people.net"]


def test_each_pe_id_gets_its_own_address(contacts, mail, db, sink):
    for pe_id in range(1, 6):
        add(contacts, pe_id, "p%d@people.net" % pe_id, priority=pe_id % 3)
        assert mail.send(pe_id=pe_id, subject="To %d" % pe_id, message="m") is True
    db.commit()
    assert mail.process_outbox()["sent"] == 5
    got = {}
    for _, rcpts, data in sink.messages:
        subject = [line for line in data.split(b"\r\n") if line.startswith(b"Subject:")][0]
        got[int(subject.split()[-1])] = rcpts
    assert got == {n: ["p%d@people.net" % n] for n in range(1, 6)}


def test_no_contact_fails_with_a_reason(contacts, mail, db, sink):
    add(contacts, 3, "+1555", method="SMS")
    add(contacts, 3, "deleted@people.net", deleted=True)
    add(contacts, 4, "four@people.net")
    assert mail.send(pe_id=3, subject="Hi", message="m") is True
    lost = mail.result["message_id"]
    assert mail.send(pe_id=4, subject="Hi", message="m") is True
    found = mail.result["message_id"]
    db.commit()
    counts = mail.process_outbox()
    assert counts["failed"] == 1 and counts["sent"] == 1, counts
    row = row_of(mail, db, lost)
    assert row.status == "failed"
    assert "no e-mail address" in row.last_error and "3" in row.last_error
    assert row_of(mail, db, found).status == "sent"
    assert [r for _, r, _ in sink.messages] == [["four@people.net"]]


def test_pe_id_without_pr_contact_table_is_refused(mail, db, sink):
    assert "pr_contact" not in db.tables
    assert mail.send(pe_id=5, subject="Hi", message="m") is False
    assert isinstance(mail.error, str) and "pr_contact" in mail.error
    db.commit()
    assert db(mail.store.outbox).count() == 0


def test_to_given_with_pe_id_uses_to_and_keeps_pe_id(contacts, mail, db, sink):
    add(contacts, 6, "contact@people.net")
    assert mail.send("given@people.net", "Hi", "m", pe_id=6) is True
    row = row_of(mail, db, mail.result["message_id"])
    assert row.pe_id == 6 and row.address == "given@people.net"
    db.commit()
    assert mail.process_outbox()["sent"] == 1
    assert sink.messages[-1][1] == ["given@people.net"]


def test_to_with_pe_id_works_without_pr_contact(mail, db, sink):
    """An app without Sahana's tables may still record the person entity."""
    assert mail.send("given@people.net", "Hi", "m", pe_id=6) is True, mail.error
    db.commit()
    assert mail.process_outbox()["sent"] == 1


def test_bad_pe_id_refused(contacts, mail, db, sink):
    for bad in ("6", 6.0, True, [6.0], (True,), {6}):  # a list of ints is a list
        assert mail.send(pe_id=bad, subject="Hi", message="m") is False, bad
        assert "pe_id" in mail.error
    db.commit()
    assert db(mail.store.outbox).count() == 0


def test_a_list_of_pe_ids_is_one_message_each_all_or_none_in_one_savepoint(
    contacts, mail, db, sink, monkeypatch
):
    """A distribution list's expansion: one row a person, one savepoint for
    them all (one a person overflows PostgreSQL's cache of 64
    subtransactions), and nothing of it kept when one insert fails."""
    people = list(range(100, 300))
    for pe_id in people:
        add(contacts, pe_id, "p%d@people.net" % pe_id)
    db.commit()
    statements, execute = [], db._adapter.execute
    monkeypatch.setattr(
        db._adapter,
        "execute",
        lambda sql, *a, **k: statements.append(sql) or execute(sql, *a, **k),
    )
    assert mail.send(pe_id=people, subject="Alert", message="Go") is True, mail.error
    monkeypatch.undo()
    assert sum(sql.startswith("SAVEPOINT") for sql in statements) == 1, statements
    assert len(mail.result["ids"]) == len(people)
    db.commit()
    rows = db(mail.store.outbox.subject == "Alert").select(orderby=mail.store.outbox.id)
    assert [r.pe_id for r in rows] == people and [r.id for r in rows] == mail.result["ids"]
    assert len({r.message_id for r in rows}) == len(people)

    taken = rows[0].message_id  # the 3rd insert collides: none of the 3 kept
    made = iter(["<a@x>", "<b@x>", taken])
    monkeypatch.setattr("s3outbox.mailer.mime.make_message_id", lambda s: next(made))
    assert mail.send(pe_id=[1, 2, 3], subject="Partial", message="m") is False
    assert "could not queue" in mail.error
    monkeypatch.undo()
    assert mail.send(pe_id=[4], subject="After", message="m") is True, mail.error
    db.commit()
    assert db(mail.store.outbox.subject == "Partial").count() == 0
    assert db(mail.store.outbox.subject == "After").count() == 1
    mail.process_outbox()
    assert sorted(
        r for _, rcpts, _ in sink.messages for r in rcpts if r.startswith("p")
    ) == sorted("p%d@people.net" % p for p in people)


def test_a_list_of_pe_ids_is_refused_beside_an_address_or_empty(contacts, mail, db):
    assert mail.send("a@people.net", pe_id=[1, 2], message="m") is False
    assert "without to, cc or bcc" in mail.error
    assert mail.send(pe_id=[], message="m") is False and "empty" in mail.error
    assert mail.send(pe_id=[1, "2"], message="m") is False and "integer" in mail.error


def test_a_list_with_attachments_keeps_their_bytes_once_and_each_gets_them(
    contacts, mail, db, sink
):
    """A file to a list: one shared copy of its bytes (a 1 MB file to 5,000
    people was 5 GB of outbox), each member's mail carrying it byte for
    byte; the copy goes with the last message that points at it."""
    people = [31, 32, 33, 34]
    for pe_id in people:
        add(contacts, pe_id, "p%d@people.net" % pe_id)
    data = os.urandom(200000)
    files = [
        mail.Attachment(io.BytesIO(data), filename="alert.bin"),
        mail.Attachment(io.BytesIO(b"notes"), filename="notes.txt"),
    ]
    assert mail.send(pe_id=people, subject="Files", message="m", attachments=files), mail.error
    ids = mail.result["ids"]
    db.commit()
    store = mail.store
    a, b = store.attachment, store.blob
    assert db(b).count() == 2
    rows = db(a.outbox_id.belongs(ids)).select()
    assert len(rows) == 2 * len(people) and all(r.blob_id and not r.payload for r in rows)
    assert store.attachments(ids[-1])[0]["payload"] == data

    assert mail.process_outbox()["sent"] == len(people)
    got = {}
    for _, rcpts, raw in sink.messages:
        parts = email.message_from_bytes(raw, policy=email.policy.default).iter_attachments()
        got[rcpts[0]] = [(p.get_filename(), p.get_content()) for p in parts]
    assert got == {
        "p%d@people.net" % p: [("alert.bin", data), ("notes.txt", "notes")] for p in people
    }

    o = store.outbox
    old = datetime.datetime(2020, 1, 1)
    db(o.id.belongs(ids[:2])).update(created_on=old, sent_on=old)
    db.commit()
    assert store.purge_sent(30, utcnow()) == (2, 2, 4)
    assert db(b).count() == 2 and store.attachments(ids[2])[0]["payload"] == data
    with store.transaction():
        store.drop(ids[2:])
    assert db(b).count() == 0 and db(a).count() == 0


def test_mail_failed_for_a_missing_attachment_is_never_sent_without_it(contacts, mail, db, sink):
    """Mail whose attachment could not be read (EdenMail: a missing
    document) is failed with the reason; a retry fails again, naming it."""
    for pe_id in (41, 42):
        add(contacts, pe_id, "p%d@people.net" % pe_id)
    assert mail.send(pe_id=[41, 42], subject="No file", message="m"), mail.error
    ids = mail.result["ids"]
    mail.store.fail_unsent(ids, "not sent: doc_document 7 could not be read", 1)
    db.commit()
    o = mail.store.outbox
    rows = db(o.id.belongs(ids)).select(o.status, o.last_error)
    assert [(r.status, r.last_error) for r in rows] == [
        ("failed", "not sent: doc_document 7 could not be read")
    ] * 2
    assert mail.process_outbox()["sent"] == 0
    assert mail.store.retry(o.id.belongs(ids), utcnow()) == 2
    counts = mail.process_outbox()
    assert counts["sent"] == 0 and counts["failed"] == 2, counts
    errors = [r.last_error for r in db(o.id.belongs(ids)).select(o.last_error)]
    assert all("1 of its 1 attachment(s) are not in the outbox" in e for e in errors), errors
    assert not sink.messages
