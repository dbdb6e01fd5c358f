"""A relay that ends a session with 421 after N messages on it, as relays
that cap messages per connection do (Exim's smtp_accept_max_per_connection,
1000 by default, answers "421 too many messages in this connection" to the
next MAIL; Microsoft 365 and others close with "421 4.4.2 ..."), at each
stage, pipelined and not, and with BDAT.

RFC 5321 (3.8, 4.2.5): 421 is the server closing the channel; the message in
flight is not delivered and may go on a new connection. So the pass sends it
again on a new session, once, and goes on: nothing is held, no attempt is
used up, and the admin is not told that the settings are wrong. Only a
session that cannot open (or a fresh one that takes no message) holds.
"""

import asyncio
import re

import pytest
from aiosmtpd.smtp import SMTP as SMTPProtocol
from faultserver import FaultServer
from smtpsink import Sink, SinkController
from test_delivery import BOB, attempts, held_state, queue, rows

N = 4  # messages a session takes before the 421
# What real servers say when they end a session (at MAIL, Exim's words).
REPLIES = {
    "MAIL": "421 too many messages in this connection",
    "RCPT": "421 4.7.0 too many messages on this connection, closing",
    "DATA": "421 4.4.2 connection dropped, try again",
    "END": "421 4.4.2 closing connection, message not accepted",
}
STAGES = pytest.mark.parametrize("stage", list(REPLIES))
MODES = pytest.mark.parametrize("extensions", [(), ("PIPELINING",)], ids=["plain", "pipelining"])
SQLITE = pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)


class _PerSession(Sink):
    """Takes ``after`` messages on a connection (``later`` on those after the
    first, when given; "greeting": greets them with 421), then answers 421 at
    ``stage`` and closes the connection. At MAIL it counts MAIL commands, taken
    or not, and the connection stays open, as Exim does.
    ``closed`` counts the 421s. A message answered 421 at its end is not
    kept, unless ``keeps`` (a server that took it all the same)."""

    def __init__(self, stage, after=N, later=None, keeps=False, **options):
        super().__init__(**options)
        self.stage, self.after, self.later, self.keeps = stage, after, later, keeps
        self.closed = 0

    def limit(self, server, stage):
        """The 421 for ``stage`` on connection ``server``, or None."""
        if stage != self.stage:
            return None
        cap = self.after if server.number == 1 or self.later is None else self.later
        if (server.mails if stage == "MAIL" else server.taken) < cap:
            return None
        self.closed += 1
        if stage != "MAIL":
            asyncio.get_running_loop().call_soon(server.transport.close)  # after the reply
        return REPLIES[stage]

    async def handle_MAIL(self, server, session, envelope, address, options):
        refusal = self.limit(server, "MAIL")
        server.mails += 1
        return refusal or await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_RCPT(self, server, session, envelope, address, options):
        return self.limit(server, "RCPT") or await super().handle_RCPT(
            server, session, envelope, address, options
        )

    async def handle_DATA(self, server, session, envelope):
        refusal = self.limit(server, "END")
        if refusal and not self.keeps:
            return refusal
        reply = await super().handle_DATA(server, session, envelope)
        server.taken += reply.startswith("250")
        return refusal or reply


class _PerSessionSMTP(SMTPProtocol):
    """aiosmtpd with the connection's number and the messages it took, and a
    421 to the DATA command (aiosmtpd has no hook before its 354)."""

    taken = mails = 0
    refused = False

    def connection_made(self, transport):
        self.event_handler.connections += 1
        self.number = self.event_handler.connections
        if self.number > 1 and self.event_handler.later == "greeting":
            self.refused = True
            transport.write(b"421 4.3.2 too busy, come back later\r\n")
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, exc):
        if not self.refused:  # aiosmtpd's own asserts a session it never made
            super().connection_lost(exc)

    async def smtp_DATA(self, arg):
        reply = self.envelope.rcpt_tos and self.event_handler.limit(self, "DATA")
        if reply:
            await self.push(reply)
            return
        await super().smtp_DATA(arg)


class _Controller(SinkController):
    def factory(self):
        return _PerSessionSMTP(self.handler, **self.SMTP_kwargs)


def _sent_all_once(mail, counts, received, n):
    """Every message went out once, first time: nothing held or retried."""
    assert counts["sent"] == n, counts
    assert counts["held"] == counts["retry"] == counts["failed"] == 0, counts
    ids = [re.search(rb"^Message-ID:\s*(\S+)", data, re.M | re.I).group(1) for data in received]
    assert len(ids) == n and len(set(ids)) == n
    assert {(r.status, r.attempts) for r in rows(mail)} == {("sent", 1)}
    assert {r.outcome for r in attempts(mail)} == {"sent"} and len(attempts(mail)) == n
    assert held_state(mail) is None


@SQLITE
@STAGES
@MODES
def test_a_421_after_n_messages_goes_on_over_a_new_session(mail, stage, extensions):
    """3N messages over a relay that ends each session after N with a 421:
    three sessions, every message sent once, nothing held (before: N sent,
    the other 2N held as "the server is not available" until the probe, one
    session's worth of mail per probe_interval)."""
    sink = _PerSession(stage, extensions=extensions)
    with _Controller(sink) as controller:
        mail.settings.server = controller.server_address
        queue(mail, 3 * N)
        counts = mail.process_outbox()
    _sent_all_once(mail, counts, [m[2] for m in sink.messages], 3 * N)
    assert sink.closed == 2 and counts["connections"] == sink.connections == 3


@SQLITE
def test_exims_cap_counts_refused_messages_too(mail):
    """Exim counts MAIL commands: a session whose messages were all refused
    ends with its 421 too, and that session answered: no reason to hold."""
    sink = _PerSession("MAIL", extensions=("PIPELINING",))
    sink.script["RCPT"] = {BOB: "550 5.1.1 no such user"}
    with _Controller(sink) as controller:
        mail.settings.server = controller.server_address
        queue(mail, N, to=BOB)
        queue(mail, 2 * N)
        counts = mail.process_outbox()
    assert counts["failed"] == N and counts["sent"] == 2 * N, counts
    assert counts["held"] == counts["retry"] == 0 and held_state(mail) is None, counts
    assert sink.count == 2 * N and not sink.duplicates()
    assert sink.closed == 2 and sink.connections == 3


@SQLITE
@pytest.mark.parametrize(
    "later,reason",
    [
        (0, "the server is not available: 421 too many messages"),
        ("greeting", "the server is not available: 421 4.3.2 too busy"),
    ],
    ids=["fresh-session-421", "greeting-421"],
)
def test_a_421_again_on_the_new_session_holds(mail, later, reason):
    """The message in flight goes on a new session once: when that session
    cannot open, or takes no message either, the server is not available
    now, and the rest is held as before (no attempt used up)."""
    sink = _PerSession("MAIL", later=later, extensions=("PIPELINING",))
    with _Controller(sink) as controller:
        mail.settings.server = controller.server_address
        queue(mail, 3 * N)
        counts = mail.process_outbox()
    assert counts["sent"] == N and counts["held"] == 2 * N and counts["retry"] == 0, counts
    assert sink.count == N and sink.connections == 2
    held = [r for r in rows(mail) if r.status == "held"]
    assert len(held) == 2 * N and {r.attempts for r in held} == {0}
    assert all(reason in r.last_error for r in held), held[0].last_error
    assert reason in held_state(mail).reason


@SQLITE
def test_a_421_at_the_end_of_data_of_a_message_the_server_kept(mail):
    """The one duplicate this can make: a server that kept a message yet
    answers 421 to its end gets it again on the new session (RFC 5321 4.2.5:
    without a 250 the message is not delivered). It carries the same
    Message-ID, so the copy is recognisable."""
    sink = _PerSession("END", keeps=True, extensions=("PIPELINING",))
    with _Controller(sink) as controller:
        mail.settings.server = controller.server_address
        queue(mail, 3 * N)
        counts = mail.process_outbox()
    assert counts["sent"] == 3 * N and counts["held"] == counts["retry"] == 0, counts
    assert sink.count == 3 * N + 2 and len(sink.duplicates()) == 2
    assert set(sink.duplicates().values()) == {2}


@pytest.mark.parametrize("db_uri", ["postgres"], indirect=True)
def test_a_long_pass_over_a_capped_relay_on_postgres(mail):
    """A whole pass on PostgreSQL: several batches over a slow relay that
    ends every session with Exim's 421 after N messages, with pipelining
    and several sessions in threads: all sent once, nothing held."""
    sink = _PerSession("MAIL", delay=0.005, extensions=("PIPELINING",))
    with _Controller(sink) as controller:
        mail.settings.server = controller.server_address
        mail.settings.sessions = 3
        mail.settings.batch_size = 10
        queue(mail, 10 * N)
        counts = mail.process_outbox()
    _sent_all_once(mail, counts, [m[2] for m in sink.messages], 10 * N)
    assert sink.closed >= 9 and counts["connections"] == sink.connections


class _PerSessionFaults(FaultServer):
    """The fault server (it speaks CHUNKING) ending each session with a 421
    at ``stage`` (MAIL, RCPT or END: the reply to BDAT LAST) after ``after``
    messages on it."""

    def __init__(self, stage, after=N, **options):
        super().__init__(**options)
        self.stage, self.after, self.closed = stage, after, 0
        self.taken = {}  # {session: messages it took}

    def _limited(self, session, stage):
        if stage != self.stage or self.taken.get(session, 0) < self.after:
            return False
        self.closed += 1
        session.reply(REPLIES[stage])
        self._close(session.conn)
        return True

    def _on_MAIL(self, session, arg):
        return not self._limited(session, "MAIL") and super()._on_MAIL(session, arg)

    def _on_RCPT(self, session, arg):
        return not self._limited(session, "RCPT") and super()._on_RCPT(session, arg)

    def _end(self, session, data):
        if self._limited(session, "END"):
            return False
        self.taken[session] = self.taken.get(session, 0) + 1
        return super()._end(session, data)


@SQLITE
@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "END"])
def test_a_421_after_n_messages_with_bdat(mail, stage):
    """The same with CHUNKING: each message goes whole as BDAT LAST, so the
    421 comes to the MAIL, a RCPT or the BDAT of a message pipelined after
    the last one taken."""
    with _PerSessionFaults(stage, extensions=("8BITMIME", "PIPELINING", "CHUNKING")) as server:
        mail.settings.server = server.server
        queue(mail, 3 * N)
        counts = mail.process_outbox()
    _sent_all_once(mail, counts, [m[2] for m in server.messages], 3 * N)
    assert any(c.upper().startswith("BDAT") for c in server.commands)
    assert server.closed == 2 and counts["connections"] == server.connections == 3
