"""Pipelined SMTP (RFC 2920, with RFC 3030 CHUNKING when offered): fewer round
trips, and every fault of tests/test_faults.py classified as without it.

The fault server advertises PIPELINING (and CHUNKING) here; aiosmtpd (the sink)
advertises PIPELINING through its EHLO hook. Each fault runs once pipelined
with DATA and once with BDAT; faults that need a DATA command run only with it.
"""

import datetime

import pytest
import test_faults
from faultserver import DROP, STALL, FaultServer
from test_faults import _check, _pass, _recovers

pytestmark = pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)

PIPELINING = ("8BITMIME", "PIPELINING")
CHUNKING = PIPELINING + ("CHUNKING",)
MODES = pytest.mark.parametrize(
    "extensions", [PIPELINING, CHUNKING], ids=["pipelining", "chunking"]
)
# The times a server waits for the client, for n messages in a row (the
# fewest, the most): smtplib awaits each of 4 replies; pipelined, the client
# waits once a message (and once for the first envelope), but it writes each
# content and the next envelope (built meanwhile) apart, so the server may
# wait for the second too; with BDAT, a message is one write.
TRIPS = {
    (): lambda n: (4 * n, 4 * n),
    PIPELINING: lambda n: (n + 1, 2 * n),
    CHUNKING: lambda n: (n, n),
}


def _trips_within(turns, extensions, n):
    """``turns`` of a session (EHLO, n messages, QUIT) as TRIPS expects."""
    fewest, most = TRIPS[extensions](n)
    return 1 + fewest + 1 <= turns <= 1 + most + 1


FAULTS = [
    # (name, script, class, reason in last_error, needs a DATA command)
    ("451 on MAIL", {"MAIL": "451 4.3.0 try later"}, "retry", "451 4.3.0 try later", False),
    (
        "553 on MAIL, our sender",
        {"MAIL": "553 5.7.1 sender not allowed"},
        "held",
        "553 5.7.1 sender not allowed",
        False,
    ),
    (
        "552 on MAIL, too big",
        {"MAIL": "552 5.3.4 message too big"},
        "failed",
        "552 5.3.4 message too big",
        False,
    ),
    ("451 on RCPT", {"RCPT": "451 4.3.0 try later"}, "retry", "451 4.3.0 try later", False),
    ("550 on RCPT", {"RCPT": "550 5.1.1 no such user"}, "failed", "550 5.1.1 no such user", False),
    ("451 on DATA", {"DATA": "451 4.3.0 local error"}, "retry", "451 4.3.0 local error", True),
    (
        "554 on DATA",
        {"DATA": "554 5.6.0 message refused"},
        "failed",
        "554 5.6.0 message refused",
        True,
    ),
    (
        "451 after the content",
        {"END": "451 4.3.0 queue full"},
        "retry",
        "451 4.3.0 queue full",
        False,
    ),
    (
        "554 after the content",
        {"END": "554 5.7.1 looks like spam"},
        "failed",
        "554 5.7.1 looks like spam",
        False,
    ),
    ("dropped at MAIL", {"MAIL": DROP}, "retry", "connection dropped", False),
    ("dropped after MAIL", {"RCPT": DROP}, "retry", "connection dropped", False),
    ("dropped after RCPT", {"DATA": DROP}, "retry", "connection dropped", True),
    ("dropped in the middle of DATA", {"BODY": DROP}, "retry", "connection dropped", True),
    ("dropped after the content", {"END": DROP}, "retry", "connection dropped", False),
    ("stall on MAIL until the timeout", {"MAIL": STALL}, "retry", "timed out", False),
    ("no reply after the content", {"END": STALL}, "retry", "timed out", False),
]


def _cases():
    for extensions, mode in ((PIPELINING, "pipelining"), (CHUNKING, "chunking")):
        for name, script, expected, reason, needs_data in FAULTS:
            if not (needs_data and "CHUNKING" in extensions):
                yield pytest.param(
                    extensions, script, expected, reason, id="%s, %s" % (mode, name)
                )


@pytest.mark.parametrize("extensions,script,expected,reason", list(_cases()))
def test_pipelined_fault(mail, db, extensions, script, expected, reason):
    with FaultServer(script, extensions) as server:
        mail.settings.server = server.server
        if "timed out" in reason:
            mail.settings.timeout = 1
        counts, row, attempts = _pass(mail, db)
        _check(expected, counts, row, attempts, reason)
        assert server.messages == []
        if DROP not in script.values() and STALL not in script.values():
            # DATA or BDAT went out with MAIL and RCPT, before their replies
            # (without pipelining a refused MAIL or RCPT would stop it).
            verbs = [c.split()[0].upper() for c in server.commands[1:4]]
            assert verbs == ["MAIL", "RCPT", "BDAT" if "CHUNKING" in extensions else "DATA"], (
                server.commands
            )
        if expected == "failed":
            return
        server.script.clear()  # the fault clears (or the admin repairs the sender)
        if expected == "held":
            mail.settings.sender = "Repaired <repaired@outbox.localhost>"
        _recovers(mail, db, row)
        assert [m[1] for m in server.messages] == [["ann@people.net"]]


@MODES
@pytest.mark.parametrize(
    "codes", [("550 5.1.1 no such user", "452 4.2.2 mailbox full")], ids=["550 and 452"]
)
def test_some_recipients_of_several_refused(mail, db, extensions, codes):
    with FaultServer(
        {"RCPT": {"bob@people.net": codes[0], "cy@people.net": codes[1]}}, extensions
    ) as server:
        mail.settings.server = server.server
        counts, row, attempts = _pass(
            mail, db, to=("ann@people.net", "bob@people.net", "cy@people.net")
        )
        assert (counts["sent"], counts["refused"], counts["deferred"]) == (1, 1, 1), counts
        assert row.status == "queued" and codes[0] in row.last_error and codes[1] in row.last_error
        assert attempts[0].outcome == "sent"
        assert [m[1] for m in server.messages] == [["ann@people.net"]]


@MODES
@pytest.mark.parametrize(
    "codes,expected",
    [
        (("550 5.1.1 no such user", "553 5.1.3 bad address"), "failed"),
        (("550 5.1.1 no such user", "451 4.3.0 try later"), "retry"),
    ],
    ids=["all 5xx", "5xx and 4xx"],
)
def test_all_recipients_refused(mail, db, extensions, codes, expected):
    """The server refuses the pipelined DATA or BDAT too; the message is
    classified by the RCPT replies, as without pipelining."""
    with FaultServer(
        {"RCPT": {"ann@people.net": codes[0], "bob@people.net": codes[1]}}, extensions
    ) as server:
        mail.settings.server = server.server
        counts, row, attempts = _pass(mail, db, to=("ann@people.net", "bob@people.net"))
        _check(expected, counts, row, attempts, codes[1])
        assert "all recipients refused" in row.last_error and codes[0] in row.last_error
        assert server.messages == []


def test_data_taken_without_recipients_is_ended_empty(mail, db):
    """A server that answers 354 to a DATA with no recipient taken gets an
    empty message it must refuse (RFC 2920, 3.1), never the content."""
    with FaultServer(
        {
            "RCPT": "550 5.1.1 no such user",
            "DATA": "354 go on",
            "END": "554 5.5.1 no valid recipients",
        },
        PIPELINING,
    ) as server:
        mail.settings.server = server.server
        counts, row, attempts = _pass(mail, db)
        _check("failed", counts, row, attempts, "550 5.1.1 no such user")
        assert server.commands[-2:] == ["rset", "quit"]  # in step after the "."
        assert b"Subject: Fault" not in b"".join(m[2] for m in server.messages)


@pytest.mark.parametrize(
    "extensions", [(), PIPELINING, CHUNKING], ids=["plain", "pipelining", "chunking"]
)
def test_round_trips_and_a_batch_in_step(mail, db, extensions):
    """One session: 4 round trips a message, 1 pipelined (see TRIPS); then
    refusals in the middle of a batch leave the session in step."""
    script = {
        "RCPT": {
            "gone@people.net": "550 5.1.1 no such user",
            "full@people.net": "452 4.2.2 mailbox full",
        }
    }
    with FaultServer(script, extensions) as server:
        mail.settings.server = server.server
        for i in range(3):
            assert mail.send("p%d@people.net" % i, "Clean", "Body"), mail.error
        db.commit()
        assert mail.process_outbox()["sent"] == 3
        assert _trips_within(server.turns, extensions, 3), server.turns
        del server.messages[:]
        to = ("a@people.net", "gone@people.net", "b@people.net", "full@people.net", "c@people.net")
        for address in to:
            assert mail.send(address, "Batch", "Body for %s" % address), mail.error
        db.commit()
        counts = mail.process_outbox()
        assert (counts["sent"], counts["failed"], counts["retry"]) == (3, 1, 1), counts
        assert server.connections == 2  # one a pass
        assert [m[1] for m in server.messages] == [
            ["a@people.net"],
            ["b@people.net"],
            ["c@people.net"],
        ]
        for _, rcpts, data in server.messages:
            assert b"Body for " + rcpts[0].encode() in data


def test_pipelining_can_be_turned_off(mail, db):
    """With ``pipelining = false`` a server that offers PIPELINING and CHUNKING
    gets one command at a time: 4 round trips a message."""
    from s3outbox.delivery.settings import apply_config, read_value

    config = {
        "smtp.server": None,
        "smtp.sender": mail.settings.sender,
        "outbox.pipelining": "false",
    }
    with FaultServer({}, CHUNKING) as server:
        config["smtp.server"] = server.server
        apply_config(mail, config.get)
        assert read_value(mail.settings, "pipelining")[0] is False
        for i in range(3):
            assert mail.send("p%d@people.net" % i, "Plain", "Body"), mail.error
        db.commit()
        assert mail.process_outbox()["sent"] == 3
        assert _trips_within(server.turns, (), 3), server.turns


@MODES
def test_faults_after_the_content_with_the_next_message_under_way(mail, db, extensions):
    """Refusals after a content whose write carried the next envelope: each
    message gets its own reply, and no RSET comes between (with DATA). A hang-up there
    leaves the message under way undelivered (the server never saw its end);
    it goes out once, later."""
    script = {
        "END": {
            "b@people.net": "554 5.7.1 looks like spam",
            "c@people.net": "451 4.3.0 queue full",
            "e@people.net": DROP,
        }
    }
    with FaultServer(script, extensions) as server:
        mail.settings.server = server.server
        to = ["%s@people.net" % x for x in "abcdef"]
        for address in to:
            assert mail.send(address, "Run", "Body for %s" % address), mail.error
        db.commit()
        counts = mail.process_outbox()
        # e is dropped twice (again on a new connection), so it waits for a
        # later pass; f, under way behind it, goes on a connection of its own.
        assert (counts["sent"], counts["failed"], counts["retry"]) == (3, 1, 2), counts
        status = {r.address: (r.status, r.last_error) for r in db(mail.store.outbox).select()}
        assert status["b@people.net"] == ("failed", "554 5.7.1 looks like spam")
        assert status["c@people.net"] == ("queued", "451 4.3.0 queue full")
        assert "connection dropped" in status["e@people.net"][1]
        assert [m[1] for m in server.messages] == [
            ["a@people.net"],
            ["d@people.net"],
            ["f@people.net"],
        ]
        assert server.connections == 3
        if "CHUNKING" not in extensions:  # (BDAT messages go one at a time)
            assert "rset" not in [c.lower() for c in server.commands]
        server.script.clear()
        db(mail.store.outbox.status == "queued").update(
            next_attempt_on=datetime.datetime(2000, 1, 1)
        )
        db.commit()
        assert mail.process_outbox()["sent"] == 2
        assert sorted(m[1][0] for m in server.messages) == [
            "a@people.net",
            "c@people.net",
            "d@people.net",
            "e@people.net",
            "f@people.net",
        ]
        for _, rcpts, data in server.messages:  # each content with its envelope
            assert b"Body for " + rcpts[0].encode() in data


def test_a_transport_never_sends_other_content_under_way(mail, db):
    """Given a message other than the one whose envelope is under way, the
    SMTP transport hangs up rather than give it that one's recipients."""
    from helpers import snapshot

    from s3outbox.transport.base import Kind
    from s3outbox.transport.smtp import SmtpTransport

    with FaultServer({}, PIPELINING) as server:
        transport = SmtpTransport(snapshot(server=server.server))
        assert transport.open() is None
        first = ("a@outbox.net", ["ann@people.net"], b"Subject: 1\r\n\r\nfor ann\r\n")
        second = ("a@outbox.net", ["bob@people.net"], b"Subject: 2\r\n\r\nfor bob\r\n")
        other = ("a@outbox.net", ["cy@people.net"], b"Subject: 3\r\n\r\nfor cy\r\n")
        assert transport.send(*first, then=lambda: second).kind == Kind.SENT
        out = transport.send(*other)
        assert out.kind == Kind.TRANSIENT and "out of step" in out.error
        assert not transport.is_open
        assert [(m[1], m[2]) for m in server.messages] == [
            (["ann@people.net"], b"Subject: 1\r\n\r\nfor ann\r\n")
        ]


def test_a_next_message_smtplib_would_refuse_does_not_fail_this_one(mail, db):
    """A next message whose commands cannot be written (here a recipient
    that is not ASCII, without SMTPUTF8) is not sent ahead; it fails on its
    own turn, as with smtplib."""
    from helpers import snapshot

    from s3outbox.transport.base import Kind
    from s3outbox.transport.smtp import SmtpTransport

    with FaultServer({}, PIPELINING) as server:
        transport = SmtpTransport(snapshot(server=server.server))
        assert transport.open() is None
        first = ("a@outbox.net", ["ann@people.net"], b"Subject: 1\r\n\r\nfor ann\r\n")
        broken = ("a@outbox.net", ["b\u00f6b@people.net"], b"x\r\n")
        assert transport.send(*first, then=lambda: broken).kind == Kind.SENT
        out = transport.send(*broken)
        assert out.kind == Kind.PERMANENT and "UnicodeEncodeError" in out.error
        assert [m[1] for m in server.messages] == [["ann@people.net"]]
        transport.close()


def test_aiosmtpd_takes_pipelined_input(mail, db, sink):
    """aiosmtpd, told to advertise PIPELINING, reads pipelined commands right:
    every message arrives whole, with fewer waits than smtplib's 4 each."""
    sink.extensions.append("PIPELINING")
    for i in range(5):
        assert mail.send("p%d@people.net" % i, "Pipelined %d" % i, "Line\n.dot\n"), mail.error
    db.commit()
    counts = mail.process_outbox()
    assert counts["sent"] == 5 and sink.connections == 1, counts
    assert sorted(m[1][0] for m in sink.messages) == ["p%d@people.net" % i for i in range(5)]
    assert all(b"\r\n.dot\r\n" in m[2] for m in sink.messages)  # dots unstuffed
    assert _trips_within(sink.round_trips, PIPELINING, 5), sink.round_trips


@pytest.mark.parametrize(
    "name,script,expected,reason",
    test_faults.REPLY_FAULTS,
    ids=[f[0] for f in test_faults.REPLY_FAULTS],
)
def test_reply_code_on_pipelining_aiosmtpd(mail, db, sink, name, script, expected, reason):
    """The reply-code faults of test_faults.py, on aiosmtpd advertising PIPELINING."""
    sink.extensions.append("PIPELINING")
    test_faults.test_reply_code(mail, db, sink, name, script, expected, reason)
    assert sink.round_trips and "PIPELINING" in sink.extensions


def test_pipelined_sessions_in_threads(mail, db, sink):
    """A slow pipelining server: the pool spreads jobs over sessions in
    threads, each session pipelining the job it took next; every message is
    delivered once, with its own content, and refusals are recorded."""
    sink.extensions.append("PIPELINING")
    sink.delay = 0.01
    sink.script["RCPT"] = {
        "p7@people.net": "550 5.1.1 no such user",
        "p19@people.net": "451 4.3.0 try later",
    }
    mail.settings.sessions = 4
    for i in range(40):
        assert mail.send("p%d@people.net" % i, "Threaded %d" % i, "Body %d" % i), mail.error
    db.commit()
    counts = mail.process_outbox()
    assert (counts["sent"], counts["failed"], counts["retry"]) == (38, 1, 1), counts
    assert 1 < sink.connections <= 4
    assert sink.duplicates() == {} and sink.count == 38
    for _, rcpts, data in sink.messages:
        assert b"Body %s\r\n" % rcpts[0][1:].split("@")[0].encode() in data
