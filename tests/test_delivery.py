"""Delivery passes against a scripted SMTP sink, on every database: what each
kind of failure does to a message, hold and release, leases, scheduling
keywords, and what an idle pass costs the database."""

import asyncio
import datetime
import json
import socket
import threading

import pytest
from aiosmtpd.smtp import SMTP as SMTPProtocol
from aiosmtpd.smtp import AuthResult
from helpers import free_port
from pydal.helpers.classes import ExecutionHandler
from smtpsink import Sink, SinkController

from s3outbox import MailS3
from s3outbox.delivery.engine import Pass
from s3outbox.delivery.holds import held_name
from s3outbox.delivery.store import utcnow

ANN, BOB = "ann@people.net", "bob@people.net"


def queue(mail, n, to=ANN, **kwargs):
    """Queue ``n`` messages and commit; return their row ids."""
    ids = []
    for i in range(n):
        assert mail.send(to, "Message %d" % i, "Body %d" % i, **kwargs), mail.error
        ids.append(mail.result["id"])
    mail.db.commit()
    return ids


def rows(mail):
    o = mail.store.outbox
    return mail.db(o).select(orderby=o.id)


def attempts(mail, outbox_id=None):
    a = mail.store.attempt
    query = a.id > 0 if outbox_id is None else a.outbox_id == outbox_id
    return mail.db(query).select(orderby=a.id)


def held_state(mail):
    """The Hold of mail's current settings on this host, or None."""
    return mail.store.get_hold(Pass(mail).key)


def probe_now(mail):
    """Move the current settings' next probe into the past."""
    now = utcnow()
    mail.store.put_hold(held_state(mail).probing_at(now - datetime.timedelta(seconds=1)), now)


def make_due(mail):
    """Move every queued message's next attempt into the past."""
    o = mail.store.outbox
    mail.db(o.status == "queued").update(next_attempt_on=utcnow() - datetime.timedelta(seconds=1))
    mail.db.commit()


# ------------------------------------------------------------ configuration
def _assert_all_held(mail, counts, n, text):
    assert counts["held"] == n and counts["sent"] == 0, counts
    for row in rows(mail):
        assert row.status == "held", row
        assert row.attempts == 0
        assert text in row.last_error, row.last_error
    state = held_state(mail)
    assert state and text in state.reason, state
    log = attempts(mail)
    assert len(log) == n and {r.outcome for r in log} == {"held"}
    assert all(text in r.error for r in log)


@pytest.mark.parametrize(
    "setting,value,text",
    [
        ("sender", "you@gmail.com", "unedited example"),
        ("server", None, "no SMTP server"),
        ("server", "nonexistent.invalid:25", "does not resolve"),
    ],
)
def test_config_error_holds_without_network(mail, sink, setting, value, text):
    """Unusable settings hold every message and never reach a server."""
    base = sink.connections  # the controller's own readiness check
    queue(mail, 5)
    mail.settings[setting] = value
    counts = mail.process_outbox()
    _assert_all_held(mail, counts, 5, text)
    assert sink.connections == base


def test_the_held_reason_follows_the_current_settings(mail, sink):
    """One bad setting replacing another: the rows, the hold of the current
    settings and the banner name the problem of now, not the first one."""
    from s3outbox.admin.outbox import OutboxAdmin

    ids = queue(mail, 3)
    mail.settings.sender = "you@gmail.com"
    assert mail.process_outbox()["held"] == 3
    for value, text in (
        ("not an address", "'not an address'"),
        ("ops@people.net", "connection refused"),
    ):
        mail.settings.sender = value
        mail.settings.server = "127.0.0.1:%d" % free_port()  # refused
        for _ in range(3):
            mail.process_outbox()
        rows = [mail.store.outbox[i] for i in ids]
        assert all(r.status == "held" and text in r.last_error for r in rows), [
            r.last_error for r in rows
        ]
        assert text in held_state(mail).reason
        assert text in OutboxAdmin(mail).held()["reason"]


def test_connection_refused_holds(mail, sink):
    mail.settings.server = "127.0.0.1:%d" % free_port()
    queue(mail, 5)
    counts = mail.process_outbox()
    _assert_all_held(mail, counts, 5, "connection refused")
    assert counts["connections"] == 0


class _Refuse:
    """An aiosmtpd authenticator that refuses every login."""

    def __call__(self, server, session, envelope, mechanism, auth_data):
        return AuthResult(success=False, handled=False)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_refused_holds_after_one_connection(mail):
    sink = Sink()
    with SinkController(
        sink, auth_required=True, auth_require_tls=False, authenticator=_Refuse()
    ) as controller:
        base = sink.connections
        mail.settings.server = controller.server_address
        mail.settings.login = "outbox:wrong-password"
        queue(mail, 5)
        counts = mail.process_outbox()
    _assert_all_held(mail, counts, 5, "535")
    assert sink.connections == base + 1 and sink.count == 0
    assert "wrong-password" not in json.dumps(held_state(mail).doc())
    assert all("wrong-password" not in (r.last_error or "") for r in rows(mail))


def test_unexpected_error_while_connecting_holds(mail, sink):
    """A setting that breaks the connection in an unforeseen way (here an
    ssl_context that is not one) must hold mail, not fail it."""
    mail.settings.ssl = True
    mail.settings.ssl_context = "not a context"
    queue(mail, 3)
    counts = mail.process_outbox()
    assert counts["held"] == 3 and counts["failed"] == 0, counts
    assert all(r.status == "held" and r.attempts == 0 for r in rows(mail))


def test_sender_refused_holds_after_one_try(mail, sink):
    sink.script["MAIL"] = "553 5.7.1 sender not allowed to relay"
    base = sink.connections
    queue(mail, 5)
    counts = mail.process_outbox()
    _assert_all_held(mail, counts, 5, "553 5.7.1 sender not allowed")
    assert sink.connections == base + 1
    assert all(r.last_code == 553 for r in rows(mail))


def test_own_sender_refused_fails_only_that_message(mail, sink):
    """A message with its own sender the server refuses cannot hold the outbox."""
    sink.script["MAIL"] = {"someone@elsewhere.org": "550 5.7.1 not your domain"}
    queue(mail, 1, sender="someone@elsewhere.org")
    queue(mail, 3)
    counts = mail.process_outbox()
    assert counts["failed"] == 1 and counts["sent"] == 3 and counts["held"] == 0, counts
    first = rows(mail).first()
    assert first.status == "failed" and "550 5.7.1 not your domain" in first.last_error
    assert held_state(mail) is None


def test_held_mail_released_after_settings_change(mail, sink):
    base = sink.connections
    mail.settings.sender = "you@gmail.com"
    queue(mail, 4)
    assert mail.process_outbox()["held"] == 4
    queue(mail, 2)  # held too, without a connection
    assert mail.process_outbox()["held"] == 2
    assert sink.connections == base
    mail.settings.sender = "Outbox <outbox@outbox.localhost>"
    counts = mail.process_outbox()
    assert counts["sent"] == 6 and counts["released"] == 6, counts
    assert {r.status for r in rows(mail)} == {"sent"}
    assert all(r.attempts == 1 for r in rows(mail))
    assert held_state(mail) is None
    assert sink.count == 6 and not sink.duplicates()


def test_outage_probe_releases_held(mail):
    """Held by a refused connection; once the server is back, a probe after
    probe_interval (a session and MAIL FROM, no message) releases the held
    mail and the same pass sends it."""
    port = free_port()
    mail.settings.server = "127.0.0.1:%d" % port
    queue(mail, 5)
    assert mail.process_outbox()["held"] == 5
    sink = Sink()
    with SinkController(sink, port=port):
        base = sink.connections
        # Before probe_after nothing is tried, new mail is held too.
        queue(mail, 1)
        counts = mail.process_outbox()
        assert counts["held"] == 1 and sink.connections == base, counts
        assert "connection refused" in held_state(mail).reason
        probe_now(mail)
        counts = mail.process_outbox()
        assert counts["sent"] == 6 and counts["released"] == 6, counts
        assert held_state(mail) is None
    assert {r.status for r in rows(mail)} == {"sent"}
    assert all(r.attempts == 1 for r in rows(mail))  # the hold cost no attempt
    assert sink.count == 6 and not sink.duplicates()


def test_probe_releases_held_even_if_a_message_is_then_refused(mail):
    """The server is back: held mail is released and each message meets its
    own fate (here one recipient does not exist)."""
    port = free_port()
    mail.settings.server = "127.0.0.1:%d" % port
    queue(mail, 1, to=BOB)
    queue(mail, 3)
    assert mail.process_outbox()["held"] == 4
    sink = Sink()
    sink.script["RCPT"] = {BOB: "550 5.1.1 no such user"}
    with SinkController(sink, port=port):
        probe_now(mail)
        counts = mail.process_outbox()
        assert counts["failed"] == 1 and counts["released"] == 4, counts
        assert counts["sent"] == 3, counts
    assert [r.status for r in rows(mail)] == ["failed", "sent", "sent", "sent"]


def test_failed_probe_waits_another_interval(mail):
    mail.settings.server = "127.0.0.1:%d" % free_port()
    mail.settings.probe_interval = 300
    queue(mail, 3)
    mail.process_outbox()
    probe_now(mail)
    counts = mail.process_outbox()
    assert counts["held"] == 0 and counts["connections"] == 0, counts
    later = held_state(mail)
    wait = (later.probe_after - utcnow()).total_seconds()
    assert 290 <= wait <= 300, later
    assert {r.status for r in rows(mail)} == {"held"}
    assert all(r.attempts == 0 for r in rows(mail))
    assert len(attempts(mail)) == 3  # the probe touched no message


def test_one_worker_takes_a_probe_turn_also_from_a_row_in_another_form(mail):
    """Workers that read the same due hold: one takes the probe turn. A row
    whose time is written in another form (here with a "T") gives a turn too,
    so its mail is still probed."""
    mail.settings.server = "127.0.0.1:%d" % free_port()
    mail.settings.probe_interval = 300
    queue(mail, 2)
    mail.process_outbox()
    key, store = Pass(mail).key, mail.store
    due = (utcnow() - datetime.timedelta(seconds=1)).isoformat()
    store.set_state(held_name(key), dict(held_state(mail).doc(), probe_after=due))
    mail.db.commit()
    first, second = store.get_hold(key), store.get_hold(key)
    assert first.due(utcnow()) and first.expected()["probe_after"] == due
    later = first.probing_at(utcnow() + datetime.timedelta(seconds=300))
    assert store.take_probe(first, later, utcnow())
    assert not store.take_probe(second, later, utcnow())
    assert held_state(mail) == later
    # The pass itself: it takes the turn and the next probe waits an interval.
    store.set_state(held_name(key), dict(later.doc(), probe_after=due))
    mail.db.commit()
    assert mail.process_outbox()["held"] == 0
    assert 290 <= (held_state(mail).probe_after - utcnow()).total_seconds() <= 300


# ---------------------------------------------------------------- transient
@pytest.mark.parametrize(
    "verb,reply",
    [
        ("RCPT", "451 4.7.1 greylisted, try later"),
        ("DATA", "452 4.3.1 insufficient storage"),
    ],
)
def test_transient_reply_retries_with_backoff(mail, sink, verb, reply):
    mail.settings.retry_base = 60
    sink.script[verb] = reply
    base = sink.connections
    queue(mail, 20)
    before = utcnow()
    counts = mail.process_outbox()
    after = utcnow()
    assert counts["retry"] == 20 and counts["sent"] == 0, counts
    delays = set()
    for row in rows(mail):
        assert row.status == "queued" and row.attempts == 1
        assert reply in row.last_error and row.last_code == int(reply[:3])
        assert before + datetime.timedelta(seconds=44) <= row.next_attempt_on
        assert row.next_attempt_on <= after + datetime.timedelta(seconds=76)
        assert row.next_attempt_on.microsecond == 0  # times are to the second
        delays.add(row.next_attempt_on)
    assert len(delays) > 1  # jitter spreads the retries
    assert sink.connections - base == 1  # one session for the batch
    log = attempts(mail)
    assert len(log) == 20 and {r.outcome for r in log} == {"retry"}
    assert {r.code for r in log} == {int(reply[:3])}
    # A pass before the retry time sends nothing.
    assert mail.process_outbox()["retry"] == 0


@pytest.mark.parametrize("verb", ["MAIL", "RCPT", "DATA"])
def test_421_at_any_stage_holds_without_an_attempt(mail, sink, verb):
    """421 is the server closing the channel, never about the message: the
    batch is held after one connection, no attempt is used up."""
    sink.script[verb] = "421 4.3.2 service shutting down"
    base = sink.connections
    queue(mail, 5)
    counts = mail.process_outbox()
    assert counts["held"] == 5 and counts["retry"] == 0, counts
    assert all(r.status == "held" and r.attempts == 0 for r in rows(mail))
    assert "421 4.3.2" in held_state(mail).reason
    assert sink.connections - base == 1


def test_backoff_doubles_then_gives_up(mail, sink):
    s = mail.settings
    s.retry_base, s.retry_max, s.max_attempts = 60, 100, 3
    sink.script["RCPT"] = "450 4.2.0 mailbox busy"
    (rid,) = queue(mail, 1)
    windows = [(45, 75), (75, 125)]  # 60 s, then 120 s capped at 100, +-25 %
    for low, high in windows:
        now = utcnow()
        assert mail.process_outbox()["retry"] == 1
        row = rows(mail).first()
        wait = (row.next_attempt_on - now).total_seconds()
        assert low - 1 <= wait <= high + 1, wait
        make_due(mail)
    counts = mail.process_outbox()
    assert counts["failed"] == 1, counts
    row = rows(mail).first()
    assert row.status == "failed" and row.attempts == 3
    assert "gave up after 3 attempts" in row.last_error
    assert "450 4.2.0 mailbox busy" in row.last_error
    log = attempts(mail, rid)
    assert [r.outcome for r in log] == ["retry", "retry", "failed"]
    assert all(r.code == 450 and r.worker for r in log)


def test_transient_fails_after_max_age(mail, sink):
    mail.settings.max_age = 3600
    sink.script["DATA"] = "451 4.3.0 try later"
    (rid,) = queue(mail, 1)
    o = mail.store.outbox
    mail.db(o.id == rid).update(created_on=utcnow() - datetime.timedelta(hours=2))
    mail.db.commit()
    assert mail.process_outbox()["failed"] == 1
    row = rows(mail).first()
    assert row.status == "failed" and row.attempts == 1


def test_dropped_server_does_not_cost_a_connection_per_message(mail):
    """A server that greets with 421 and hangs up: the batch is held after
    one connection, no attempt used up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(50)
    server.settimeout(0.5)
    mail.settings.server = "127.0.0.1:%d" % server.getsockname()[1]
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            conn.sendall(b"421 4.3.2 too busy, come back later\r\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        queue(mail, 10)
        counts = mail.process_outbox()
    finally:
        server.close()
        thread.join()
    assert counts["held"] == 10, counts
    assert len(accepted) == 1, len(accepted)
    assert all("421" in r.last_error and r.attempts == 0 for r in rows(mail))
    assert "421 4.3.2" in held_state(mail).reason


# ---------------------------------------------------------------- permanent
@pytest.mark.parametrize(
    "verb,reply",
    [
        ("RCPT", "550 5.1.1 no such user"),
        ("DATA", "554 5.7.1 message rejected as spam"),
    ],
)
def test_permanent_reply_fails_at_once(mail, sink, verb, reply):
    sink.script[verb] = reply
    queue(mail, 3, to=[ANN, BOB])
    counts = mail.process_outbox()
    assert counts["failed"] == 3 and counts["retry"] == 0, counts
    for row in rows(mail):
        assert row.status == "failed" and row.attempts == 1
        assert reply in row.last_error and row.last_code == int(reply[:3])
    log = attempts(mail)
    assert [(r.outcome, r.code) for r in log] == [("failed", int(reply[:3]))] * 3
    assert held_state(mail) is None


def test_partial_refusal_is_sent_and_recorded(mail, sink):
    sink.script["RCPT"] = {BOB: "550 5.1.1 no such user"}
    queue(mail, 1, to=[ANN, BOB])
    counts = mail.process_outbox()
    assert counts["sent"] == 1 and counts["refused"] == 1, counts
    row = rows(mail).first()
    assert row.status == "sent" and row.sent_on is not None
    assert json.loads(row.refused) == {BOB: "550 5.1.1 no such user"}
    assert sink.messages[0][1] == [ANN]
    (log,) = attempts(mail)
    assert log.outcome == "sent" and BOB in log.error


def test_attempt_log_has_one_row_per_attempt(mail, sink):
    mail.settings.worker_name = "worker-7"
    sink.script["DATA"] = "451 4.3.0 try later"
    (rid,) = queue(mail, 1)
    mail.process_outbox()
    del sink.script["DATA"]
    make_due(mail)
    mail.process_outbox()
    log = attempts(mail, rid)
    assert [(r.worker, r.outcome, r.code) for r in log] == [
        ("worker-7", "retry", 451),
        ("worker-7", "sent", 250),
    ]
    assert "451 4.3.0 try later" in log[0].error and log[1].error is None
    assert all(r.attempted_on for r in log)


# ------------------------------------------------------------- connections
def test_batch_reuses_one_connection(mail, sink):
    base = sink.connections
    queue(mail, 50)
    counts = mail.process_outbox()
    assert counts["sent"] == 50 and counts["connections"] == 1, counts
    assert sink.connections == base + 1 and len(sink.message_ids) == 50


class _HangUp(Sink):
    """Closes the connection at the MAIL after the third message, once."""

    async def handle_MAIL(self, server, session, envelope, address, options):
        if self.count == 3 and not self.dropped:
            self.dropped = True
            server.transport.close()
            return "421 4.4.2 closing connection"
        return await Sink.handle_MAIL(self, server, session, envelope, address, options)


def test_reconnects_once_when_the_server_hangs_up(mail):
    """Servers close long sessions; the pass reconnects and goes on."""
    sink = _HangUp()
    sink.dropped = False
    with SinkController(sink) as controller:
        base = sink.connections
        mail.settings.server = controller.server_address
        queue(mail, 6)
        counts = mail.process_outbox()
    assert counts["sent"] == 6, counts
    assert sink.connections == base + 2 and sink.count == 6 and not sink.duplicates()


class _Limited(Sink):
    """A relay that takes ``limit`` sessions of ours at once (``_LimitedSMTP``)
    and, with ``close_after``, closes each session after that many messages,
    as relays that cap messages per session do. It counts the connections
    open at once at most (``peak``, refused ones included) and those refused."""

    def __init__(self, limit=2, close_after=None, **options):
        super().__init__(**options)
        self.limit, self.close_after = limit, close_after
        self.active = self.open = self.peak = self.refused = 0

    async def handle_DATA(self, server, session, envelope):
        reply = await Sink.handle_DATA(self, server, session, envelope)
        server.messages += reply.startswith("250")
        if self.close_after and server.messages >= self.close_after:
            asyncio.get_running_loop().call_soon(server.transport.close)  # after the reply
        return reply


class _LimitedSMTP(SMTPProtocol):
    """Greets with 421 beyond the handler's ``limit`` concurrent sessions, as
    relays that cap connections per client do (Office 365 allows three)."""

    messages = 0

    def connection_made(self, transport):
        sink = self.event_handler
        sink.open += 1
        sink.peak = max(sink.peak, sink.open)
        self.refused = sink.active >= sink.limit
        if self.refused:
            sink.refused += 1
            transport.write(b"421 4.7.0 too many concurrent connections\r\n")
            transport.close()
            return
        sink.active += 1
        super().connection_made(transport)

    def connection_lost(self, exc):
        sink = self.event_handler
        sink.open -= 1
        if not self.refused:
            sink.active -= 1
            super().connection_lost(exc)


class _LimitedController(SinkController):
    def factory(self):
        return _LimitedSMTP(self.handler, **self.SMTP_kwargs)


def test_sessions_beyond_the_servers_limit_do_not_fail_mail(mail):
    """With a slow relay the pool opens more sessions; those the server
    refuses retire and leave their messages to the sessions it accepted."""
    sink = _Limited(delay=0.01)
    with _LimitedController(sink) as controller:
        mail.settings.server = controller.server_address
        mail.settings.sessions = 8
        queue(mail, 30)
        counts = mail.process_outbox()
    assert counts["sent"] == 30 and counts["retry"] == 0, counts
    assert sink.count == 30 and not sink.duplicates()
    assert {r.attempts for r in rows(mail)} == {1}


def test_retiring_sessions_never_outnumber_the_pool(mail):
    """A slow relay that takes two sessions of ours at once and closes each
    after four messages, over five batches: sessions retire (refused as the
    pool grows, or as one reconnects) and at no moment are more than
    ``sessions`` connections open. A retired session is not tried again:
    fewer refusals in the whole pass than sessions (before, the refused
    session was tried again in every batch, a 421 each time)."""
    sink = _Limited(limit=2, close_after=4, delay=0.01)
    with _LimitedController(sink) as controller:
        mail.settings.server = controller.server_address
        mail.settings.sessions = 4
        mail.settings.batch_size = 20
        queue(mail, 100)
        counts = mail.process_outbox()
    assert counts["sent"] == 100 and counts["retry"] == counts["held"] == 0, counts
    assert sink.count == 100 and not sink.duplicates()
    assert sink.peak <= 4, "%d connections open at once" % sink.peak
    assert 1 <= sink.refused < 4, "%d sessions refused" % sink.refused


# ------------------------------------------------------------------- leases
def test_expired_lease_is_reclaimed_and_sent_once(mail, make_db, sink, tablename):
    queue(mail, 5)
    store = mail.store
    dead = store.claim("dead-host#1/abc", 10, 1, utcnow())
    assert len(dead) == 5 and {r.status for r in dead} == {"sending"}
    # Another worker, before the lease ends: nothing to take.
    other = MailS3(
        make_db(),
        server=sink.server,
        sender="outbox@outbox.localhost",
        tls=False,
        tablename=tablename,
    )
    other.settings.sessions = 1
    assert other.process_outbox()["sent"] == 0
    o = store.outbox
    mail.db(o.id > 0).update(lease_until=utcnow() - datetime.timedelta(seconds=1))
    mail.db.commit()
    counts = other.process_outbox()
    assert counts["sent"] == 5, counts
    assert sink.count == 5 and not sink.duplicates()
    # The dead worker wakes up and reports: its lease is gone, nothing changes.
    from s3outbox.delivery.store import SENT_PLAIN

    store.record(
        "dead-host#1/abc", utcnow(), "dead-host#1", [(r.id, SENT_PLAIN, None) for r in dead]
    )
    assert {r.status for r in rows(mail)} == {"sent"}
    # The lost lease counted as one attempt, the delivery as the second.
    assert all(r.lease_owner is None and r.attempts == 2 for r in rows(mail))
    assert other.process_outbox()["sent"] == 0 and sink.count == 5


def test_message_that_keeps_killing_its_worker_gives_up(mail, sink):
    """Every lost lease is an attempt: after max_attempts the message fails
    with the reason instead of being claimed (and crashing a worker) for ever."""
    mail.settings.max_attempts = 3
    queue(mail, 1)
    o = mail.store.outbox
    for attempt in range(1, 4):
        assert len(mail.store.claim("doomed#%d/x" % attempt, 10, 60, utcnow())) == 1
        mail.db(o.id > 0).update(lease_until=utcnow() - datetime.timedelta(seconds=1))
        mail.db.commit()
        mail.store.requeue_expired(utcnow(), mail.settings.max_attempts)
        (row,) = rows(mail)
        assert row.attempts == attempt
        assert row.status == ("failed" if attempt == 3 else "queued"), row
    assert "gave up after 3 attempts" in row.last_error
    assert "lease ran out" in row.last_error and row.lease_owner is None
    assert mail.process_outbox()["sent"] == 0 and sink.count == 0


# --------------------------------------------------------------- scheduling
def test_expired_message_fails(mail, sink):
    (old,) = queue(mail, 1, expires_on=utcnow() - datetime.timedelta(minutes=1))
    queue(mail, 1, expires_on=utcnow() + datetime.timedelta(hours=1))
    counts = mail.process_outbox()
    assert counts["failed"] == 1 and counts["sent"] == 1, counts
    first, second = rows(mail)
    assert first.status == "failed" and "expired" in first.last_error
    assert second.status == "sent" and sink.count == 1


def test_priority_goes_first(mail, sink):
    queue(mail, 3, to="bulk@people.net", priority=9)
    queue(mail, 1, to="urgent@people.net", priority=1)
    queue(mail, 1, to="normal@people.net")
    assert mail.process_outbox(limit=1)["sent"] == 1
    assert [m[1] for m in sink.messages] == [["urgent@people.net"]]
    mail.process_outbox()
    assert [m[1][0] for m in sink.messages] == ["urgent@people.net", "normal@people.net"] + [
        "bulk@people.net"
    ] * 3


def test_not_before_is_respected(mail, sink):
    (later,) = queue(mail, 1, not_before=utcnow() + datetime.timedelta(hours=1))
    queue(mail, 1)
    assert mail.process_outbox()["sent"] == 1
    assert rows(mail).first().status == "queued" and sink.count == 1
    make_due(mail)
    assert mail.process_outbox()["sent"] == 1 and sink.count == 2


# ------------------------------------------------------------ the pass itself
class _Statements(ExecutionHandler):
    seen = None

    def after_execute(self, command):
        type(self).seen.append(command)


def test_idle_pass_only_reads(mail, db, sink, request):
    """A pass with nothing due writes nothing: SQLite is shared with the web
    server, and an idle worker polls every second."""
    queue(mail, 1)
    mail.process_outbox()
    _Statements.seen = seen = []
    db._adapter.execution_handlers.append(_Statements)
    counts = mail.process_outbox()
    db._adapter.execution_handlers.remove(_Statements)
    assert counts["sent"] == 0 and "error" not in counts
    writes = [s for s in seen if s.split()[0].upper() not in ("SELECT",)]
    assert writes == []
    request.node.user_properties.append(("idle_pass_queries", len(seen)))
    print("idle pass: %d statements on %s" % (len(seen), db._adapter.dbengine))
    assert len(seen) <= 3


def test_idle_loop_step_only_reads(mail, db, sink):
    """What the never-ending delivery loop runs each poll when idle: the
    pause check and the idle pass, reads only."""
    queue(mail, 1)
    mail.process_outbox()
    _Statements.seen = seen = []
    db._adapter.execution_handlers.append(_Statements)
    counts = mail.deliver_some()
    db._adapter.execution_handlers.remove(_Statements)
    assert counts["sent"] == 0 and "error" not in counts
    assert [s for s in seen if s.split()[0].upper() != "SELECT"] == []
    assert len(seen) <= 4


def test_idle_pass_sees_mail_queued_afterwards(mail, make_db, sink, tablename):
    """An idle pass must not keep a read snapshot that hides new mail
    (MariaDB's REPEATABLE READ would)."""
    assert mail.process_outbox()["sent"] == 0
    web = MailS3(
        make_db(),
        server=sink.server,
        sender="outbox@outbox.localhost",
        tls=False,
        tablename=tablename,
    )
    queue(web, 2)
    assert mail.process_outbox()["sent"] == 2


def test_idle_pass_runs_while_the_outbox_is_locked(mail, make_db, tablename):
    """Another transaction holds write locks on every outbox table (on SQLite:
    the database write lock); an idle pass still finishes at once."""
    queue(mail, 1)
    mail.process_outbox()
    web = make_db()
    engine, tables = (
        web._adapter.dbengine,
        [tablename + s for s in ("", "_attempt", "_attachment", "_blob", "_state")],
    )
    mine = mail.db._adapter
    if engine == "sqlite":
        mine.connection.execute("PRAGMA busy_timeout = 200")
        web._adapter.execute("BEGIN IMMEDIATE")
    elif engine == "postgres":
        mine.execute("SET lock_timeout = '1s'")
        web.executesql("LOCK TABLE %s IN EXCLUSIVE MODE" % ", ".join(tables))
    else:
        mine.execute("SET SESSION innodb_lock_wait_timeout = 1")
        for table in tables:
            web.executesql("SELECT * FROM %s FOR UPDATE" % table)
    mail.db.commit()
    try:
        counts = mail.process_outbox()
    finally:
        web.rollback()
    assert "error" not in counts and counts["sent"] == 0, counts


def test_broken_database_does_not_escape(mail, sink, db):
    """Whatever breaks inside a pass is reported, never raised to the scheduler."""
    queue(mail, 2)
    db.executesql("DROP TABLE %s_state" % mail.store.tablename)
    db.commit()
    counts = mail.process_outbox()
    assert counts["sent"] == 0 and "error" in counts, counts
    assert mail.store.tablename + "_state" in counts["error"]
    # The connection is usable afterwards.
    assert db(mail.store.outbox).count() == 2


def test_new_mailer_does_not_wait_for_open_transactions(mail, make_db, tablename):
    """The models build a MailS3 on every request: that must not wait for
    another request that queued mail and has not committed yet."""
    assert mail.send(ANN, "Welcome", "Body")  # left uncommitted
    other = make_db()
    engine, adapter = other._adapter.dbengine, other._adapter
    if engine == "sqlite":
        adapter.connection.execute("PRAGMA busy_timeout = 200")
    elif engine == "postgres":
        adapter.execute("SET lock_timeout = '1s'")
    else:
        adapter.execute("SET SESSION lock_wait_timeout = 1")
        adapter.execute("SET SESSION innodb_lock_wait_timeout = 1")
    second = MailS3(
        other,
        server=mail.settings.server,
        sender="outbox@outbox.localhost",
        tls=False,
        tablename=tablename,
    )
    assert second.store.outbox is other[tablename]
    other.rollback()
    mail.db.commit()


def test_results_are_recorded_during_a_slow_batch(mail, sink, db_uri, tmp_path, tablename):
    """Results are written as a batch goes (every RECORD_EVERY seconds), so a
    worker dying late in a slow batch has left little sent mail unrecorded:
    only that can be sent again by the worker that takes over."""
    from pydal import DAL

    sink.delay = 0.04  # about 0.16 s a message: four replies
    queue(mail, 6)
    sent_before_last = []

    def on_message(mail_from, rcpts, data):
        if sink.count == 6:  # the last message: what is recorded already?
            other = DAL(db_uri, folder=str(tmp_path), migrate=False)
            try:
                sent_before_last.append(
                    other.executesql("SELECT COUNT(*) FROM %s WHERE status='sent'" % tablename)[0][
                        0
                    ]
                )
            finally:
                other.close()

    sink.on_message = on_message
    counts = mail.process_outbox()
    assert counts["sent"] == 6, counts
    assert sent_before_last and sent_before_last[0] >= 3, sent_before_last
    assert {r.status for r in rows(mail)} == {"sent"}
    assert len(mail.db(mail.store.attempt).select()) == 6
