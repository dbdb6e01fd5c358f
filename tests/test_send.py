"""MailS3.send(): what it accepts (everything web2py 2.26's Mail.send takes),
what it refuses (with a str error, queueing nothing), and that it never
raises, never mutates its arguments and never touches the network.

Accepted mail is delivered to the SMTP sink on every database, so a value
that does not survive the round trip through the database fails here.
"""

import dataclasses
import datetime
import email
import email.policy
import io
import json
import random

import pytest
from gluon.storage import Storage
from gluon.tools import Mail
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from s3outbox import MailS3
from s3outbox.delivery import message as mime
from s3outbox.delivery.store import utcnow
from s3outbox.delivery.wire import message_bytes

EMOJI = "\U0001f600"  # 4 bytes in UTF-8: needs utf8mb4 on MariaDB


def delivered(sink, index=-1):
    """(mail_from, rcpt_tos, parsed message) of a message the sink accepted."""
    mail_from, rcpts, data = sink.messages[index]
    return mail_from, rcpts, email.message_from_bytes(data, policy=email.policy.default)


def deliver_one(mail, db, sink):
    db.commit()
    assert sink.connections == 0, "send() opened a connection"
    counts = mail.process_outbox()
    assert counts["sent"] == 1, (counts, db(mail.store.outbox).select().as_list())
    assert sink.count == 1
    return delivered(sink)


def body_text(msg, kind="plain"):
    part = msg.get_body((kind,))
    return None if part is None else part.get_content()


def outbox_count(mail):
    return mail.db(mail.store.outbox).count()


# ------------------------------------------------------------- accepted
def test_to_as_str(mail, db, sink):
    assert mail.send("ann@people.net", "Hi", "Body") is True, mail.error
    assert mail.error is None
    assert set(mail.result) >= {"id", "message_id"}
    _, rcpts, msg = deliver_one(mail, db, sink)
    assert rcpts == ["ann@people.net"]
    assert msg["To"] == "ann@people.net" and msg["Subject"] == "Hi"
    assert body_text(msg).strip() == "Body"


@pytest.mark.parametrize(
    "to",
    [
        ["ann@people.net", "Bob Brown <bob@people.net>"],
        ("ann@people.net", "Bob Brown <bob@people.net>"),
        "ann@people.net, Bob Brown <bob@people.net>",
        ["ann@people.net, Bob Brown <bob@people.net>"],
    ],
    ids=["list", "tuple", "comma-str", "comma-in-list"],
)
def test_to_forms(mail, db, sink, to):
    assert mail.send(to, "Hi", "Body") is True, mail.error
    _, rcpts, msg = deliver_one(mail, db, sink)
    assert rcpts == ["ann@people.net", "bob@people.net"]
    assert [a.addr_spec for a in msg["To"].addresses] == rcpts
    assert msg["To"].addresses[1].display_name == "Bob Brown"


def test_cc_bcc_reply_to_str_and_list(mail, db, sink):
    assert (
        mail.send(
            "ann@people.net",
            "Hi",
            "Body",
            cc="cy@people.net",
            bcc=["bo@people.net", "Bea <bea@people.net>"],
            reply_to=["desk@people.net", "Help <help@people.net>"],
        )
        is True
    )
    _, rcpts, msg = deliver_one(mail, db, sink)
    assert rcpts == ["ann@people.net", "cy@people.net", "bo@people.net", "bea@people.net"]
    assert msg["Cc"] == "cy@people.net"
    assert "Bcc" not in msg and b"bo@people.net" not in sink.messages[0][2]
    assert [a.addr_spec for a in msg["Reply-To"].addresses] == [
        "desk@people.net",
        "help@people.net",
    ]


def test_cc_only_queues(mail, db, sink):
    """Stock Mail.send raises without 'to'; a cc or bcc alone is a recipient."""
    assert mail.send(None, "Hi", "Body", bcc="bo@people.net") is True, mail.error
    _, rcpts, msg = deliver_one(mail, db, sink)
    assert rcpts == ["bo@people.net"] and "To" not in msg


def test_html_string(mail, db, sink):
    html = "<html><body><p>Hello</p></body></html>"
    assert mail.send("ann@people.net", "Hi", html) is True
    _, _, msg = deliver_one(mail, db, sink)
    assert msg.get_content_type() == "text/html"
    assert msg.get_content().strip() == html


@pytest.mark.parametrize("pair", [tuple, list])
def test_text_html_pair(mail, db, sink, pair):
    assert mail.send("ann@people.net", "Hi", pair(["Plain", "<p>Rich</p>"])) is True
    _, _, msg = deliver_one(mail, db, sink)
    assert msg.get_content_type() == "multipart/alternative"
    assert body_text(msg).strip() == "Plain"
    assert body_text(msg, "html").strip() == "<p>Rich</p>"


def test_html_only_pair(mail, db, sink):
    assert mail.send("ann@people.net", "Hi", (None, "<p>Rich</p>")) is True
    _, _, msg = deliver_one(mail, db, sink)
    assert msg.get_content_type() == "text/html"
    assert msg.get_content().strip() == "<p>Rich</p>"


def test_file_like_bodies_in_tuple(mail, db, sink):
    text = io.StringIO("Plain from a file")
    html = io.BytesIO("<p>Rich fr\u00f6m bytes</p>".encode("utf-8"))
    assert mail.send("ann@people.net", "Hi", (text, html)) is True, mail.error
    _, _, msg = deliver_one(mail, db, sink)
    assert body_text(msg).strip() == "Plain from a file"
    assert body_text(msg, "html").strip() == "<p>Rich fr\u00f6m bytes</p>"


def test_bytes_body_in_declared_encoding(mail, db, sink):
    """Stock Mail.send raises on bytes in another encoding; we decode them."""
    assert (
        mail.send(
            "ann@people.net",
            "Caf\u00e9".encode("latin-1"),
            "na\u00efve".encode("latin-1"),
            encoding="latin-1",
        )
        is True
    ), mail.error
    _, _, msg = deliver_one(mail, db, sink)
    assert msg["Subject"] == "Caf\u00e9"
    assert body_text(msg).strip() == "na\u00efve"


def test_attachments_from_path_and_file_like(mail, db, sink, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    report = "R\u00e9sum\u00e9 " + EMOJI
    attachments = [
        Mail.Attachment(str(photo), content_id="photo"),
        Mail.Attachment(
            io.BytesIO(report.encode("utf-8")), filename="r\u00e9sum\u00e9-%s.txt" % EMOJI
        ),
    ]
    assert (
        mail.send(
            "ann@people.net", "Files", (None, '<img src="cid:photo">'), attachments=attachments
        )
        is True
    ), mail.error
    _, _, msg = deliver_one(mail, db, sink)
    assert msg.get_content_type() == "multipart/mixed"
    files = list(msg.iter_attachments())
    assert [p.get_filename() for p in files] == ["photo.png", "r\u00e9sum\u00e9-%s.txt" % EMOJI]
    assert files[0].get_content_type() == "image/png"
    assert files[0]["Content-Id"] == "<photo>"
    assert files[0].get_payload(decode=True) == photo.read_bytes()
    assert files[1].get_payload(decode=True) == report.encode("utf-8")


def test_long_body_delivered_intact(mail, db, sink):
    """Over 1000 bytes: SMTP needs CRLF line ends, or the server reads the
    whole message as one over-long line and refuses it."""
    text = "\n".join("line %04d \u00e9 %s" % (n, "." * 60) for n in range(400))
    assert mail.send("ann@people.net", "Long", text) is True
    _, _, msg = deliver_one(mail, db, sink)
    assert body_text(msg).splitlines() == text.splitlines()
    assert b"\r\n" in sink.messages[0][2]


def test_single_attachment_without_body(mail, db, sink):
    attachment = Mail.Attachment(io.BytesIO(b"a,b\n1,2\n"), filename="data.csv")
    assert mail.send("ann@people.net", "Data", None, attachments=attachment) is True
    _, _, msg = deliver_one(mail, db, sink)
    files = list(msg.iter_attachments())
    assert len(files) == 1 and files[0].get_filename() == "data.csv"
    assert files[0].get_payload(decode=True) == b"a,b\n1,2\n"


def test_sender_from_address_and_headers(mail, db, sink):
    assert (
        mail.send(
            "ann@people.net",
            "Hi",
            "Body",
            sender="Desk <desk@people.net>",
            from_address="The D\u00e9sk <desk@people.net>",
            headers={"X-Campaign": "spring", "X-Count": 3, "X-Note": "s\u00e9e"},
        )
        is True
    ), mail.error
    mail_from, _, msg = deliver_one(mail, db, sink)
    assert mail_from == "desk@people.net"
    assert msg["From"].addresses[0].display_name == "The D\u00e9sk"
    assert msg["X-Campaign"] == "spring" and msg["X-Count"] == "3"
    assert msg["X-Note"] == "s\u00e9e"


def test_default_sender_is_the_settings_sender(mail, db, sink):
    assert mail.send("ann@people.net", "Hi", "Body") is True
    mail_from, _, msg = deliver_one(mail, db, sink)
    assert mail_from == "outbox@outbox.localhost"
    assert str(msg["From"]) == "Outbox <outbox@outbox.localhost>"


def test_list_unsubscribe(mail, db, sink):
    assert mail.send("ann@people.net", "Hi", "Body", list_unsubscribe="leave@people.net") is True
    _, _, msg = deliver_one(mail, db, sink)
    assert msg["List-Unsubscribe"] == "<mailto:leave@people.net>"


def test_raw(mail, db, sink):
    """Stock Mail.send raises on raw=True under Python 3; we send it as is."""
    assert (
        mail.send(
            "ann@people.net",
            "Raw",
            "Line one\nLine two",
            raw=True,
            attachments=Mail.Attachment(io.BytesIO(b"x"), filename="dropped.txt"),
        )
        is True
    ), mail.error
    _, _, msg = deliver_one(mail, db, sink)
    assert not msg.is_multipart()  # raw ignores attachments, as in Mail.send
    assert msg.get_content().splitlines() == ["Line one", "Line two"]


def test_non_ascii_everywhere(mail, db, sink):
    subject = "Gr\u00fc\u00dfe \u2014 \u4f60\u597d " + EMOJI
    text = "Z\u00fcrich, \u041c\u043e\u0441\u043a\u0432\u0430, " + EMOJI
    html = "<p>\u0645\u0631\u062d\u0628\u0627 %s</p>" % EMOJI
    assert (
        mail.send(
            "Zo\u00eb \u00c6ther %s <zoe@people.net>" % EMOJI,
            subject,
            (text, html),
            cc="\u738b\u5c0f\u660e <wang@people.net>",
            sender="S\u00e9nder <desk@people.net>",
            reply_to="R\u00e9ply <r@people.net>",
        )
        is True
    ), mail.error
    _, rcpts, msg = deliver_one(mail, db, sink)
    assert rcpts == ["zoe@people.net", "wang@people.net"]
    assert msg["Subject"] == subject
    assert body_text(msg).strip() == text
    assert body_text(msg, "html").strip() == html
    assert msg["To"].addresses[0].display_name == "Zo\u00eb \u00c6ther " + EMOJI
    assert msg["Cc"].addresses[0].display_name == "\u738b\u5c0f\u660e"
    assert msg["From"].addresses[0].display_name == "S\u00e9nder"
    assert msg["Reply-To"].addresses[0].display_name == "R\u00e9ply"


def test_stored_data_is_readable_json(mail, db, sink):
    """The body column is JSON a person or a report can read; no pickle."""
    subject = "Stored " + EMOJI
    assert (
        mail.send(
            ["ann@people.net"],
            subject,
            ("T\u00eaxt " + EMOJI, "<b>h</b>"),
            cc="cy@people.net",
            headers={"X-A": "1"},
            attachments=Mail.Attachment(io.BytesIO(b"\x00\x01\xff"), filename="bin.dat"),
        )
        is True
    )
    db.commit()
    table = mail.store.tablename
    ((body, stored_subject, address, status),) = db.executesql(
        "SELECT body, subject, address, status FROM %s" % table
    )
    data = json.loads(body)
    assert data["to"] == ["ann@people.net"] and data["cc"] == ["cy@people.net"]
    assert data["subject"] == subject and stored_subject == subject
    assert data["text"] == "T\u00eaxt " + EMOJI and data["html"] == "<b>h</b>"
    assert data["headers"] == {"X-A": "1"}
    assert address == "ann@people.net" and status == "queued"
    stored = db(mail.store.attachment).select().first()
    assert stored.filename == "bin.dat" and stored.payload == b"\x00\x01\xff"


def test_message_id_fixed_at_queue_time(mail, db, sink):
    assert mail.send("ann@people.net", "Hi", "Body") is True
    message_id = mail.result["message_id"]
    row = db(mail.store.outbox).select().first()
    assert row.message_id == message_id and message_id.endswith("@outbox.localhost>")
    _, _, msg = deliver_one(mail, db, sink)
    assert msg["Message-ID"] == message_id


def test_caller_lists_are_not_mutated(mail, db, sink):
    to, cc, bcc = ["ann@people.net"], ["cy@people.net"], ["bo@people.net"]
    attachments = [Mail.Attachment(io.BytesIO(b"x"), filename="x.txt")]
    headers = {"X-A": "1"}
    assert (
        mail.send(to, "Hi", "Body", cc=cc, bcc=bcc, attachments=attachments, headers=headers)
        is True
    )
    assert to == ["ann@people.net"] and cc == ["cy@people.net"]
    assert bcc == ["bo@people.net"] and headers == {"X-A": "1"}
    assert len(attachments) == 1
    # the mutable default of headers={} must not carry a header to the next call
    assert mail.send("ann@people.net", "Again", "Body") is True
    db.commit()
    second = mail.store.content(db(mail.store.outbox.subject == "Again").select().first())
    assert second["headers"] == {}


def test_send_opens_no_connection_and_does_not_commit(mail, db, sink):
    for n in range(3):
        assert mail.send("ann%d@people.net" % n, "Hi", "Body") is True
    assert sink.connections == 0
    db.rollback()
    assert outbox_count(mail) == 0


def test_send_after_the_connection_was_dropped(mail, db, sink):
    """The store drops a connection that failed (the database restarted);
    send() opens a new one, as pydal's own statements would."""
    db.commit()
    mail.store.db._adapter.set_connection(None)
    assert mail.send("ann@people.net", "After a restart", "Body"), mail.error
    deliver_one(mail, db, sink)


def test_server_and_sender_unset_still_queue(db, sink, tablename):
    """Stock Mail.send raises 'Server/Sender address not specified'; queueing
    needs neither, and the pass holds the mail until they are set."""
    mail = MailS3(db, tablename=tablename)
    assert mail.send("ann@people.net", "Hi", "Body") is True, mail.error
    db.commit()
    counts = mail.process_outbox()
    assert counts["held"] == 1 and counts["sent"] == 0
    assert sink.connections == 0
    row = db(mail.store.outbox).select().first()
    assert row.status == "held" and "server" in row.last_error


def test_example_sender_queues_and_holds(mail, db, sink):
    mail.settings.sender = "you@gmail.com"
    assert mail.send("ann@people.net", "Hi", "Body") is True
    db.commit()
    assert mail.process_outbox()["held"] == 1
    assert sink.connections == 0


def test_priority_and_schedule_keywords(mail, db, sink):
    later = utcnow() + datetime.timedelta(hours=1)
    assert mail.send("ann@people.net", "Later", "Body", not_before=later) is True
    assert mail.send("ann@people.net", "Now", "Body", priority=1) is True
    db.commit()
    assert mail.process_outbox()["sent"] == 1
    _, _, msg = delivered(sink)
    assert msg["Subject"] == "Now"
    row = db(mail.store.outbox.subject == "Later").select().first()
    assert row.status == "queued" and row.next_attempt_on == later


def test_aware_times_are_kept_as_naive_utc(mail, db):
    """An aware datetime is converted to the store's convention, naive UTC."""
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    local = datetime.datetime(2031, 5, 1, 12, 30, 15, 999, tzinfo=plus2)
    assert (
        mail.send(
            "ann@people.net",
            "Later",
            "Body",
            not_before=local,
            expires_on=local + datetime.timedelta(days=1),
        )
        is True
    )
    row = db(mail.store.outbox.id == mail.result["id"]).select().first()
    assert row.next_attempt_on == datetime.datetime(2031, 5, 1, 10, 30, 15)
    assert row.expires_on == datetime.datetime(2031, 5, 2, 10, 30, 15)


# ------------------------------------------------------------- refused
LONG = "x" * 300
BAD = [
    (dict(to=None), "no recipient"),
    (dict(to=""), "no recipient"),
    (dict(to=[]), "no recipient"),
    (dict(to=["", "  "]), "no recipient"),
    (dict(to="not-an-address"), "not a valid e-mail address"),
    (dict(to="ann@"), "not a valid e-mail address"),
    (dict(to="ann@people"), "not a valid e-mail address"),
    (dict(to="ann people@x.net"), "not a valid e-mail address"),
    (dict(to="ann@people.net 0"), "not a valid e-mail address"),  # not ...net0
    (dict(to=["ann@people.net", "bob@@people.net"]), "not a valid e-mail address"),
    (dict(to="ann@people.net", cc="nobody"), "cc address"),
    (dict(to="ann@people.net", bcc=["x@y.z", "bad"]), "bcc address"),
    (dict(to="ann@people.net", reply_to="bad"), "reply_to"),
    (dict(to="ann@people.net", sender="bad"), "sender"),
    (dict(to=123), "recipient"),
    (dict(to=["ann@people.net", None, 5]), "recipient"),
    (dict(to="ann@people.net\r\nBcc: evil@x.net"), "line break"),
    (dict(to=["ann@people.net\n"]), "line break"),
    (dict(to="ann@people.net\x00"), "NUL"),
    (dict(cc="cy@people.net\rX: y", to="ann@people.net"), "line break"),
    (dict(bcc="bo@people.net\n", to="ann@people.net"), "line break"),
    (dict(subject="Hi\r\nBcc: evil@x.net"), "subject"),
    (dict(subject="Hi\nthere"), "subject"),
    (dict(subject="Hi\x00"), "subject"),
    (dict(sender="desk@people.net\r\nX: y"), "sender"),
    (dict(reply_to="r@people.net\n"), "reply_to"),
    (dict(from_address="Desk <desk@people.net>\r\nBcc: evil@x.net"), "from_address"),
    (dict(headers={"X-A": "1\r\nBcc: evil@x.net"}), "header X-A"),
    (dict(headers={"X-A": "1\x00"}), "header X-A"),
    (dict(headers={"X-A\r\nBcc": "evil@x.net"}), "header name"),
    (dict(headers={"X A": "1"}), "header name"),
    (dict(headers={"X:A": "1"}), "header name"),
    (dict(headers={"": "1"}), "header name"),
    (dict(headers={5: "1"}), "header name"),
    (dict(headers={"Bcc": "evil@x.net"}), "set by send()"),
    (dict(list_unsubscribe="a@b.net\nX: y"), "list_unsubscribe"),
    (dict(message=None), "no body"),
    (dict(message=(None, "")), "no body"),
    (dict(message=(None, None)), "no body"),
    (dict(message=42), "message must be text"),
    (dict(message=object()), "message must be text"),
    (dict(message=["only one"]), "(text, html)"),
    (dict(message=("a", "b", "c")), "(text, html)"),
    (dict(message=(42, "<p>x</p>")), "text body"),
    (dict(message=("x", 42)), "html body"),
    (dict(message=b"\xff\xfe", encoding="utf-8"), "not valid utf-8"),
    (dict(encoding="no-such-codec"), "unknown encoding"),
    (dict(encoding=None), "unknown encoding"),
    (dict(attachments="not an attachment"), "Mail.Attachment"),
    (dict(attachments=[b"bytes"]), "Mail.Attachment"),
    (dict(raw=True, message=None), "raw"),
    (dict(cipher_type="gpg"), "cipher_type"),
    (dict(cipher_type="x509"), "cipher_type"),
    (dict(dkim=Storage(key="k", selector="s")), "dkim"),
    (dict(pe_id="5"), "pe_id"),
    (dict(pe_id=True), "pe_id"),
    (dict(priority="high"), "priority"),
    (dict(priority=0), "priority"),
    (dict(priority=10), "priority"),
    (dict(not_before="tomorrow"), "not_before"),
    (dict(expires_on=5), "expires_on"),
]


def _ids(case):
    return ",".join("%s=%.20r" % kv for kv in case[0].items())


@pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kwargs,fragment", BAD, ids=[_ids(c) for c in BAD])
def test_bad_input_returns_false(mail, db, sink, kwargs, fragment):
    """Validation happens before the database, so one engine is enough here;
    test_refusals_queue_nothing below runs every case on every engine."""
    args = dict(to="ann@people.net", subject="Hi", message="Body")
    args.update(kwargs)
    assert mail.send(**args) is False
    assert isinstance(mail.error, str) and fragment in mail.error, mail.error
    assert mail.result == {}
    db.commit()
    assert outbox_count(mail) == 0
    assert db(mail.store.attachment).count() == 0
    assert sink.connections == 0


def test_refusals_queue_nothing(mail, db, sink):
    """Every refused case, on every engine: nothing queued, the caller's
    transaction still usable, then a good message still goes out."""
    for kwargs, _ in BAD:
        args = dict(to="ann@people.net", subject="Hi", message="Body")
        args.update(kwargs)
        assert mail.send(**args) is False, kwargs
    assert outbox_count(mail) == 0
    assert mail.send("ann@people.net", "Good", "Body") is True
    _, _, msg = deliver_one(mail, db, sink)
    assert msg["Subject"] == "Good"


def test_oversize_refused(mail, db, sink):
    mail.settings.max_size = 1000
    assert mail.send("ann@people.net", "Big", "x" * 1001) is False
    assert "max_size" in mail.error and "1001" in mail.error
    big = Mail.Attachment(io.BytesIO(b"y" * 990), filename="y.bin")
    assert mail.send("ann@people.net", "Big", "0123456789x", attachments=big) is False
    assert mail.send("ann@people.net", "Fits", "x" * 1000) is True, mail.error
    db.commit()
    assert outbox_count(mail) == 1


def test_long_values_refused_not_truncated(mail, db, sink):
    """Values longer than their column are refused up front: MariaDB (pydal
    turns strict mode off) would cut them silently, PostgreSQL would abort
    the caller's transaction."""
    cases = [
        dict(attachments=Mail.Attachment(io.BytesIO(b"x"), filename=LONG + ".txt")),
        dict(attachments=Mail.Attachment(io.BytesIO(b"x"), filename="a.txt", content_id=LONG)),
        dict(sender="%s <desk@people.net>" % ("N" * 600)),
    ]
    for kwargs in cases:
        assert mail.send("ann@people.net", "Hi", "Body", **kwargs) is False, kwargs
        assert "long" in mail.error, mail.error
    assert db.executesql("SELECT 1")[0][0] == 1  # the transaction still works
    assert outbox_count(mail) == 0


@pytest.mark.parametrize("attached", [True, False], ids=["attachment", "no attachment"])
def test_database_error_leaves_caller_transaction_usable(mail, db, sink, monkeypatch, attached):
    """A real database error inside send() (here a Message-ID collision on the
    unique index) returns False, keeps nothing of that message, and leaves the
    caller's transaction usable, even on PostgreSQL; with or without the
    savepoint (a lone INSERT on SQLite and MariaDB goes without)."""
    assert mail.send("first@people.net", "One", "Body") is True
    taken = mail.result["message_id"]
    monkeypatch.setattr("s3outbox.mailer.mime.make_message_id", lambda sender: taken)
    attachments = [Mail.Attachment(io.BytesIO(b"x"), filename="x.txt")] if attached else []
    assert mail.send("second@people.net", "Two", "Body", attachments=attachments) is False
    assert isinstance(mail.error, str) and "could not queue" in mail.error
    monkeypatch.undo()
    assert mail.send("third@people.net", "Three", "Body") is True, mail.error
    db.commit()
    subjects = sorted(r.subject for r in db(mail.store.outbox).select())
    assert subjects == ["One", "Three"]
    assert db(mail.store.attachment).count() == 0


# ------------------------------------------- where stock Mail.send raises
def _stock_raising_calls(tmp_path):
    """Argument combinations that make gluon's Mail.send raise (design.md)."""
    return [
        dict(to=None, subject="s", message="m"),
        dict(to="", subject="s", message="m"),
        dict(to="ann@people.net", message=None),
        dict(to="ann@people.net", message=(None, "")),
        dict(to=("ann@people.net",), cc="cy@people.net", message="m"),
        dict(to=("ann@people.net",), bcc=["bo@people.net"], message="m"),
        dict(to="ann@people.net", message=io.StringIO("file-like, no tuple")),
        dict(to="ann@people.net", message="m", cipher_type="gpg"),
        dict(to="ann@people.net", message="m", raw=True),
        dict(to="ann@people.net", message="caf\u00e9".encode("latin-1"), encoding="latin-1"),
    ]


def test_stock_mail_raises_on_these(tmp_path, sink):
    """Keeps the list below honest: stock Mail.send does raise on each."""
    stock = Mail(sink.server, "Outbox <outbox@outbox.localhost>", tls=False)
    for kwargs in _stock_raising_calls(tmp_path):
        with pytest.raises(Exception):  # noqa: B017 (stock Mail raises many kinds)
            stock.send(**kwargs)
    for kwargs in (dict(to="a@people.net", message="m"),):
        with pytest.raises(Exception, match="Server address not specified"):
            Mail().send(**kwargs)
        with pytest.raises(Exception, match="Sender address not specified"):
            Mail(sink.server, tls=False).send(**kwargs)


def test_never_raises_where_stock_mail_raises(mail, db, sink, tmp_path):
    results = []
    for kwargs in _stock_raising_calls(tmp_path):
        result = mail.send(**kwargs)
        assert result in (True, False), kwargs
        assert result or isinstance(mail.error, str), kwargs
        results.append(result)
    # to tuple + cc/bcc, file-like message, raw and latin-1 bytes are queued
    assert results == [False, False, False, False, True, True, True, False, True, True]
    db.commit()
    assert mail.process_outbox()["sent"] == 5
    assert sink.count == 5


def test_bad_dkim_setting_holds_at_delivery_not_at_send(mail, db, sink):
    """Stock Mail.send signs outside its try and raises on a bad settings.dkim;
    here send() queues and the pass holds the mail, naming the setting (a
    setting that cannot sign is the admin's to fix, not the message's fault),
    and it goes out once the setting is fixed."""
    mail.settings.dkim = Storage(key="not a key", selector="s")
    assert mail.send("ann@people.net", "Hi", "Body") is True, mail.error
    db.commit()
    counts = mail.process_outbox()
    assert counts["held"] == 1 and sink.count == 0
    row = db(mail.store.outbox).select().first()
    assert row.status == "held" and "[outbox] dkim" in row.last_error
    mail.settings.dkim = None
    assert mail.process_outbox()["sent"] == 1 and sink.count == 1


def test_unknown_arguments_and_wrong_pe_id_types_return_false(mail, db, sink):
    for kwargs, fragment in (
        (dict(bogus=1), "unknown keyword argument(s): bogus"),
        (dict(pe_id=1.5), "pe_id"),
        (dict(pe_id="x"), "pe_id"),
    ):
        assert mail.send("ann@people.net", "Hi", "Body", **kwargs) is False
        assert fragment in mail.error, mail.error
    every = ["ann@people.net", "Hi", "Body"] + [None] * 24  # all 27 of them
    assert mail.send(*every, "extra") is False
    assert "positional" in mail.error
    assert mail.send(to="x@attack.test\n") is False and "line break" in mail.error


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(subject="S" * 2000),
        dict(to='"%s" <ann@people.net>' % ("N" * 3000)),
        dict(to='"%s" <ann@people.net>' % ("Ü" * 500)),
        dict(headers={"X-Long": "v" * 1500}),
    ],
    ids=["subject", "name", "non-ASCII name", "header"],
)
def test_long_subjects_and_names_are_delivered(mail, db, sink, kwargs):
    """What send() accepts can be delivered: long values go out as RFC 2047
    words that fold (aiosmtpd refused the unfolded line: 500 Line too long)."""
    args = dict(to="ann@people.net", subject="Hi", message="Body")
    args.update(kwargs)
    assert mail.send(**args) is True, mail.error
    db.commit()
    assert mail.process_outbox()["sent"] == 1
    msg = delivered(sink)[2]
    assert max(len(line) for line in sink.messages[-1][2].splitlines()) < 100
    if "subject" in kwargs:
        assert msg["Subject"] == kwargs["subject"]
    if "headers" in kwargs:
        assert msg["X-Long"] == "v" * 1500


# ---------------------------------------------------------------- fuzzing
_junk = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.binary(max_size=20),
    st.integers(),
    st.lists(st.one_of(st.text(max_size=30), st.none()), max_size=3),
    st.tuples(
        st.one_of(st.none(), st.text(max_size=20)), st.one_of(st.none(), st.text(max_size=20))
    ),
    st.sampled_from(["<html>x</html>", "x\r\ny", "\x00", "a@b", "@b.net"]),
)
_name = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)
_address = st.builds(
    "{} <{}@{}.net>".format,
    _name,
    st.sampled_from(["ann", "b.o+b", "x_y"]),
    st.sampled_from(["people", "xn--bcher-kva", "\u00fcber"]),
)
_addresses = st.one_of(_address, st.lists(_address, min_size=1, max_size=3), _junk)
_text = st.one_of(st.text(max_size=60), _junk)
_body = st.one_of(
    _text,
    st.tuples(
        st.one_of(st.none(), st.text(max_size=30)), st.one_of(st.none(), st.text(max_size=30))
    ),
)


@pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    to=_addresses,
    cc=_addresses,
    subject=_text,
    message=_body,
    reply_to=st.one_of(st.none(), _addresses),
    sender=st.one_of(st.none(), _address),
    headers=st.one_of(
        st.dictionaries(st.sampled_from(["X-A", "X-B"]), _text, max_size=2),
        st.dictionaries(st.text(max_size=8), _junk, max_size=2),
    ),
    raw=st.booleans(),
)
def test_fuzz_never_raises_and_what_queues_can_be_built(
    mail, db, to, cc, subject, message, reply_to, sender, headers, raw
):
    """Any arguments: True, or False with a str error; and every message that
    was queued can be rebuilt into MIME bytes by the delivery code."""
    ok = mail.send(
        to, subject, message, cc=cc, reply_to=reply_to, sender=sender, headers=headers, raw=raw
    )
    assert ok in (True, False)
    event("queued" if ok else "refused")  # see --hypothesis-show-statistics
    if not ok:
        assert isinstance(mail.error, str) and mail.error
    else:
        row = db(mail.store.outbox.id == mail.result["id"]).select().first()
        msg = dataclasses.replace(
            mail.store.message(row), attachments=mail.store.attachments(row.id)
        )
        args = (
            msg,
            row.sender or "o@outbox.localhost",
            row.message_id,
            datetime.datetime.now(datetime.UTC),
        )
        random.seed(0)  # the multipart boundary
        data = mime.wire(mime.build(*args))
        assert data.count(b"\nMessage-ID:") == 1
        random.seed(0)
        assert message_bytes(*args) == data
    db.rollback()
