"""Against a real Postfix on loopback (tests/postfix.py), which advertises
PIPELINING and CHUNKING: mail goes out pipelined, with BDAT or (for a big
message) DATA, whole, and refusals are classified as with any server."""

import json

import pytest
from helpers import attachment, snapshot, wait_for
from postfix import Postfix, unusable

from s3outbox.transport import pipeline
from s3outbox.transport.base import Kind
from s3outbox.transport.smtp import SmtpTransport

pytestmark = pytest.mark.skipif(unusable() is not None, reason=str(unusable()))
MESSAGE = b"Subject: x\r\n\r\nx\r\n"


@pytest.fixture(scope="module")
def postfix():
    with Postfix() as server:
        yield server


def test_postfix_offers_pipelining_and_chunking(postfix):
    transport = SmtpTransport(snapshot(server=postfix.server))
    assert transport.open() is None
    try:
        assert transport.pipeline is not None and transport.pipeline.chunking
        out = transport.send("outbox@outbox.net", ["refused@people.net"], MESSAGE)
        assert (out.kind, out.code) == (Kind.PERMANENT, 550) and "no such user" in out.error
        out = transport.send("outbox@outbox.net", ["later@people.net"], MESSAGE)
        assert (out.kind, out.code) == (Kind.TRANSIENT, 450)
    finally:
        transport.close()


@pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)
def test_outbox_through_postfix(mail, db, postfix):
    """A batch with every kind of reply, one of them bigger than BDAT is used
    for (so DATA, with a line that must be dot-stuffed): each is recorded as
    Postfix answered and the accepted ones are delivered whole."""
    mail.settings.server = postfix.server
    big = b"x" * (pipeline.CHUNK_LIMIT + 1000)
    sends = [
        dict(to="ann@people.net", subject="Plain", message="Hello Ann\n.dot line\n"),
        dict(
            to=["bob@people.net", "refused@people.net"],
            subject="Partly refused",
            message="Hello Bob",
        ),
        dict(to="refused@people.net", subject="Refused", message="Nobody"),
        dict(to="later@people.net", subject="Later", message="Try again"),
        dict(
            to="cy@people.net",
            subject="Big",
            message="Hello Cy\n.dot line\n",
            attachments=[attachment("big.bin", big)],
        ),
    ]
    for kwargs in sends:
        assert mail.send(**kwargs), mail.error
    db.commit()
    counts = mail.process_outbox()
    assert (counts["sent"], counts["failed"], counts["retry"], counts["refused"]) == (
        3,
        1,
        1,
        1,
    ), counts
    rows = {r.subject: r for r in db(mail.store.outbox).select()}
    assert "550 5.1.1" in json.loads(rows["Partly refused"].refused)["refused@people.net"]
    assert rows["Refused"].status == "failed" and "550 5.1.1" in rows["Refused"].last_error
    assert rows["Later"].status == "queued" and "450 4.2.1" in rows["Later"].last_error
    delivered = wait_for(lambda: len(postfix.mbox()) >= 3 and postfix.mbox(), timeout=60)
    assert delivered and len(delivered) == 3, postfix.log()
    by_id = {rows[s].message_id.encode(): s for s in ("Plain", "Partly refused", "Big")}
    seen = {}
    for message in delivered:
        found = [s for mid, s in by_id.items() if b"Message-ID: " + mid in message]
        assert len(found) == 1, message[:500]
        seen[found[0]] = message
    assert set(seen) == {"Plain", "Partly refused", "Big"}
    assert b"\nHello Ann\n.dot line" in seen["Plain"]  # stored with LF, dots unstuffed
    assert len(seen["Big"]) > pipeline.CHUNK_LIMIT and b"\nHello Cy\n.dot line\n" in seen["Big"]
