"""The shortest path through the outbox on every database: queue, deliver."""


def test_queue_then_deliver(mail, sink, db):
    assert mail.send("ann@people.net", "Hello", "Body") is True, mail.error
    db.commit()
    assert sink.count == 0  # send() never touches the network
    counts = mail.process_outbox()
    assert counts["sent"] == 1 and counts["failed"] == 0, counts
    row = db(mail.store.outbox).select().first()
    assert row.status == "sent" and row.attempts == 1
    assert sink.messages[0][1] == ["ann@people.net"]


def test_rollback_leaves_nothing_queued(mail, sink, db):
    assert mail.send("ann@people.net", "Hello", "Body") is True
    db.rollback()
    assert db(mail.store.outbox).count() == 0
    assert mail.process_outbox()["sent"] == 0
    assert sink.count == 0
