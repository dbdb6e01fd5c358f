"""The mail MailS3 delivers has the shape web2py's own Mail.send gives it.

Each case is sent twice to the same SMTP sink: once by a real gluon.tools.Mail,
once through the outbox (queued in the database, delivered by a pass). The
two must agree on the MIME tree, the decoded headers, the bodies, the
attachments and the envelope; ours adds a Message-ID fixed at queue time.
"""

import email
import io
import re
from email.header import decode_header, make_header

import pytest
from gluon.tools import Mail

SENDER = "Outbox <outbox@outbox.localhost>"
EMOJI = "\U0001f600"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def decoded(msg, name):
    """A header's value unfolded (RFC 5322 2.2.3) and RFC 2047-decoded."""
    value = msg.get(name)
    if value is None:
        return None
    return str(make_header(decode_header(re.sub(r"\r?\n(?=[ \t])", "", value))))


def shape(part):
    """The parts of a message as nested lists: type, charset, encoding,
    disposition, file name, Content-Id, then the children or the payload."""
    node = [
        part.get_content_type(),
        part.get_content_charset(),
        part.get("Content-Transfer-Encoding"),
        part.get_content_disposition(),
        part.get_filename(),
        part.get("Content-Id"),
    ]
    if part.is_multipart():
        node.append([shape(p) for p in part.get_payload()])
    else:
        node.append(part.get_payload(decode=True))
    return node


COMPARED = ("From", "To", "Cc", "Reply-To", "Subject", "List-Unsubscribe", "X-Campaign", "X-Note")


def sent_both_ways(mail, db, sink, make, stock_settings=None):
    """(stock envelope+message, outbox envelope+message) for kwargs make()."""
    stock = Mail(sink.server, SENDER, tls=False)
    for key, value in (stock_settings or {}).items():
        stock.settings[key] = value
        mail.settings[key] = value
    assert stock.send(**make()) is True, stock.error
    theirs = sink.messages[-1]
    assert mail.send(**make()) is True, mail.error
    db.commit()
    counts = mail.process_outbox()
    assert counts["sent"] == 1, (counts, db(mail.store.outbox).select().as_list())
    ours = sink.messages[-1]
    return [(f, r, email.message_from_bytes(d)) for f, r, d in (theirs, ours)]


def assert_equivalent(theirs, ours):
    (t_from, t_rcpt, t_msg), (o_from, o_rcpt, o_msg) = theirs, ours
    assert (o_from, o_rcpt) == (t_from, t_rcpt)
    for name in COMPARED:
        assert decoded(o_msg, name) == decoded(t_msg, name), name
    names = lambda m: sorted(k.lower() for k in m.keys())  # noqa: E731
    assert names(o_msg) == sorted(names(t_msg) + ["message-id"])
    assert "bcc" not in names(o_msg)
    assert shape(o_msg) == shape(t_msg)


def _photo(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(PNG)
    return str(path)


CASES = {
    "text": lambda p: dict(to="ann@people.net", subject="Hi", message="Body\nline 2"),
    "non-ascii": lambda p: dict(
        to="ann@people.net",
        subject="Gr\u00fc\u00dfe \u4f60\u597d " + EMOJI,
        message="Z\u00fcrich \u041c\u043e\u0441\u043a\u0432\u0430 " + EMOJI,
    ),
    "long-text": lambda p: dict(
        to="ann@people.net",
        subject="Long " * 30,
        message="\n".join("line %d caf\u00e9 %s" % (n, "-" * 90) for n in range(200)),
    ),
    "html": lambda p: dict(to="ann@people.net", message="<html><b>Hi</b></html>"),
    "pair": lambda p: dict(to="ann@people.net", message=("Plain", "<p>Rich</p>")),
    "html-only-pair": lambda p: dict(to="ann@people.net", message=(None, "<p>R</p>")),
    "file-like-pair": lambda p: dict(
        to="ann@people.net", message=(io.StringIO("Plain"), io.BytesIO(b"<p>Rich \xc3\xa9</p>"))
    ),
    "recipients": lambda p: dict(
        to=["ann@people.net", "Bob Brown <bob@people.net>"],
        cc=["cy@people.net", "Cyd <cyd@people.net>"],
        bcc="hidden@people.net",
        reply_to="desk@people.net",
        message="m",
    ),
    "non-ascii-names": lambda p: dict(
        to="Zo\u00eb \u00c6ther <zoe@people.net>",
        cc=["\u738b\u5c0f\u660e <wang@people.net>"],
        reply_to="R\u00e9ply <r@people.net>",
        message="m",
    ),
    "attachments": lambda p: dict(
        to="ann@people.net",
        subject="Files",
        message="See attached",
        attachments=[
            Mail.Attachment(_photo(p), content_id="photo"),
            Mail.Attachment(
                io.BytesIO("R\u00e9sum\u00e9".encode("utf-8")), filename="r\u00e9sum\u00e9.txt"
            ),
            Mail.Attachment(
                io.BytesIO(b"%PDF-1.4\n"), filename="a.pdf", content_type="application/pdf"
            ),
        ],
    ),
    "inline-image": lambda p: dict(
        to="ann@people.net",
        message=("Text", '<img src="cid:photo">'),
        attachments=Mail.Attachment(_photo(p), filename="me.png", content_id="photo"),
    ),
    "attachment-only": lambda p: dict(
        to="ann@people.net",
        message=None,
        attachments=[Mail.Attachment(io.BytesIO(b"a,b\n"), filename="d.csv")],
    ),
    "sender-from-headers": lambda p: dict(
        to="ann@people.net",
        message="m",
        sender="desk@people.net",
        from_address="The Desk <desk@people.net>",
        headers={"X-Campaign": "spring", "X-Note": "s\u00e9e"},
    ),
    "non-ascii-from": lambda p: dict(
        to="ann@people.net", message="m", sender="S\u00e9nder <desk@people.net>"
    ),
    "list-unsubscribe": lambda p: dict(
        to="ann@people.net", message="m", list_unsubscribe="leave@people.net"
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_mime_as_stock_mail(mail, db, sink, tmp_path, case):
    make = lambda: CASES[case](tmp_path)  # noqa: E731 (file-likes are read once)
    theirs, ours = sent_both_ways(mail, db, sink, make)
    assert_equivalent(theirs, ours)


def test_settings_list_unsubscribe_as_stock_mail(mail, db, sink):
    """Mail.send falls back to settings.list_unsubscribe; so must we."""
    theirs, ours = sent_both_ways(
        mail,
        db,
        sink,
        lambda: dict(to="ann@people.net", message="m"),
        stock_settings=dict(list_unsubscribe="leave@people.net"),
    )
    assert decoded(theirs[2], "List-Unsubscribe") == "<mailto:leave@people.net>"
    assert_equivalent(theirs, ours)


def test_raw_is_a_single_text_part(mail, db, sink):
    """Stock Mail.send cannot send raw=True under Python 3 (it raises), so
    compare with what it means: one text/plain part, no multipart, the body
    as given, attachments ignored."""
    text = "Caf\u00e9\nsecond line"
    assert (
        mail.send(
            "ann@people.net",
            "R\u00e2w",
            text,
            raw=True,
            attachments=Mail.Attachment(io.BytesIO(b"x"), filename="x"),
        )
        is True
    )
    db.commit()
    assert mail.process_outbox()["sent"] == 1
    msg = email.message_from_bytes(sink.messages[-1][2])
    assert not msg.is_multipart() and msg.get_content_type() == "text/plain"
    body = msg.get_payload(decode=True).decode(msg.get_content_charset())
    assert body.splitlines() == text.splitlines()
    assert decoded(msg, "Subject") == "R\u00e2w"


def test_message_id_stable_across_a_retry(mail, db, sink):
    """A DATA 451 then a success: both attempts carry the Message-ID that was
    fixed when the message was queued, so a receiver can drop a duplicate."""
    tried = []
    real = sink.handle_DATA

    async def data(server, session, envelope):
        tried.append(email.message_from_bytes(envelope.original_content)["Message-ID"])
        return await real(server, session, envelope)

    sink.handle_DATA = data  # seen by the next connection's protocol
    sink.script["DATA"] = "451 4.3.0 try again later"
    assert mail.send("ann@people.net", "Retry", "Body") is True
    queued_id = mail.result["message_id"]
    db.commit()
    assert mail.process_outbox()["retry"] == 1
    row = db(mail.store.outbox).select().first()
    assert row.status == "queued" and row.attempts == 1 and "451" in row.last_error
    del sink.script["DATA"]
    db(mail.store.outbox.id == row.id).update(next_attempt_on=row.created_on)
    db.commit()
    assert mail.process_outbox()["sent"] == 1
    assert tried == [queued_id, queued_id]
    assert sink.message_ids == {queued_id: 1}
    assert email.message_from_bytes(sink.messages[-1][2])["Message-ID"] == queued_id


def test_message_ids_unique(mail, db, sink):
    for n in range(20):
        assert mail.send("ann%d@people.net" % n, "Hi", "Body") is True
    db.commit()
    assert mail.process_outbox()["sent"] == 20
    assert len(sink.message_ids) == 20 and not sink.duplicates()


def test_bcc_in_envelope_not_in_headers(mail, db, sink):
    assert (
        mail.send(
            "ann@people.net",
            "Hi",
            "Body",
            cc="cy@people.net",
            bcc=["secret@people.net", "Hid Den <hidden@people.net>"],
        )
        is True
    )
    db.commit()
    assert mail.process_outbox()["sent"] == 1
    mail_from, rcpts, data = sink.messages[-1]
    assert rcpts == ["ann@people.net", "cy@people.net", "secret@people.net", "hidden@people.net"]
    assert b"secret@people.net" not in data and b"hidden@people.net" not in data
    assert email.message_from_bytes(data)["Bcc"] is None


def test_bcc_only_has_no_to_header(mail, db, sink):
    assert mail.send(None, "Hi", "Body", bcc="secret@people.net") is True
    db.commit()
    assert mail.process_outbox()["sent"] == 1
    _, rcpts, data = sink.messages[-1]
    msg = email.message_from_bytes(data)
    assert rcpts == ["secret@people.net"] and msg["To"] is None
    assert b"secret@people.net" not in data
