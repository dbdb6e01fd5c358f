"""send(pe_id=N): the address comes from Sahana's pr_contact when the message
is delivered: the first EMAIL contact by priority that is not deleted."""

import pytest
from pydal import Field


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
