"""SessionPool on the in-memory transport: one session while the server is
fast, threads once it is slow, one connection for a broken setup, and a
message that cannot be built fails alone."""

import logging
import threading

from helpers import snapshot, wait_for

from s3outbox.delivery.pool import Job, SessionPool
from s3outbox.transport.base import Kind, MemoryTransport, Outcome, memory

SENDER = "outbox@outbox.net"


def jobs(n, sender=SENDER, bad=()):
    """``n`` jobs to r<i>@people.net; those numbered in ``bad`` cannot be built."""

    def builder(i):
        def build():
            if i in bad:
                raise ValueError("broken attachment %d" % i)
            return b"Subject: %d\r\n\r\nbody\r\n" % i

        return build

    return [Job(i, sender, ["r%d@people.net" % i], builder(i)) for i in range(n)]


def pool(size=1, **options):
    transport = memory(**options)
    return SessionPool(snapshot(transport=transport), size), transport.sent


def numbered(sessions, sent, on_open, on_send, the_pool, third_wanted):
    """A transport factory for the race of a session made as another retires:
    each session calls ``on_open(n)`` and ``on_send(n)`` with its number, and
    the third is made (the producer has taken the third place) only after
    ``third_wanted`` is set and the second has retired (the pool's size is 2)."""

    def transport(snap):
        number = len(sessions)
        if number == 2:
            third_wanted.set()
            wait_for(lambda: the_pool().size == 2, timeout=5, step=0.001)
        session = MemoryTransport(
            snap,
            sent,
            on_open=lambda: on_open(number),
            on_send=lambda *a: on_send(number),
            delay=0.02,
        )
        sessions.append(session)
        return session

    return transport


def test_fast_jobs_share_one_session_inline():
    p, sent = pool(size=4)
    batch = jobs(20)
    with p:
        p.deliver(batch)
    assert [j.outcome.kind for j in batch] == [Kind.SENT] * 20
    assert all(j.done for j in batch)
    assert len(sent) == 20 and p.connections == 1 and not p.threaded


def test_config_error_at_open_costs_one_connection():
    refused = Outcome(Kind.CONFIG, 535, "authentication refused: 535")
    p, sent = pool(size=4, on_open=lambda: refused)
    batch = jobs(5)
    with p:
        p.deliver(batch)
    assert [j.outcome for j in batch] == [refused] * 5
    assert p.connections == 1 and p.config_error is refused and sent == []


def test_own_sender_refused_stops_the_pool():
    refusal = Outcome(Kind.CONFIG, 553, "sender refused")
    p, sent = pool(on_send=lambda *a: refusal)
    batch = jobs(3)
    p.deliver(batch)
    assert [j.outcome.kind for j in batch] == [Kind.CONFIG] * 3
    assert p.config_error is refusal


def test_a_messages_own_sender_refused_fails_alone():
    def on_send(sender, recipients, data):
        if sender == "other@people.net":
            return Outcome(Kind.CONFIG, 553, "sender other@people.net refused")

    p, sent = pool(on_send=on_send)
    batch = jobs(1, sender="other@people.net") + jobs(2)
    p.deliver(batch)
    assert batch[0].outcome.kind == Kind.PERMANENT
    assert "the sender given to send()" in batch[0].outcome.error
    assert [j.outcome.kind for j in batch[1:]] == [Kind.SENT] * 2
    assert p.config_error is None and len(sent) == 2


def test_a_messages_own_sender_refused_without_a_reply_fails_alone():
    """Found by mypy: a site's own transport that gave no error text made the
    pool add None and a string (a TypeError, taken as an internal error)."""
    p, sent = pool(on_send=lambda s, r, d: Outcome(Kind.CONFIG, 550) if s != SENDER else None)
    batch = jobs(1, sender="other@people.net")
    p.deliver(batch)
    assert batch[0].outcome.kind == Kind.PERMANENT
    assert batch[0].outcome.error == "sender refused (the sender given to send() for this message)"


def test_dropped_session_is_reopened_once_for_the_job():
    sessions = []

    def transport(snap):
        session = MemoryTransport(snap, sent, on_send=drop_first)
        sessions.append(session)
        return session

    sent, calls = [], []

    def drop_first(sender, recipients, data):
        calls.append(recipients)
        if len(calls) == 1:
            sessions[0].drop()
            return Outcome(Kind.TRANSIENT, None, "connection dropped")

    p = SessionPool(snapshot(transport=transport))
    batch = jobs(2)
    p.deliver(batch)
    assert [j.outcome.kind for j in batch] == [Kind.SENT] * 2
    assert sessions[0].opened == 2 and p.config_error is None and p.reached


def test_slow_server_spreads_jobs_over_threads():
    p, sent = pool(size=3, delay=0.03)
    batch = jobs(30)
    with p:
        p.deliver(batch)
    assert p.threaded and len(p.sessions) == 3
    assert sorted(s[1][0] for s in sent) == sorted(j.recipients[0] for j in batch)
    assert all(j.outcome.kind == Kind.SENT and j.done for j in batch)


def test_unbuildable_messages_fail_alone_and_retire_no_session(caplog):
    """Threaded, two sessions, three messages that cannot be built among
    forty: those three fail, the rest go out, and both sessions keep
    working after them (before, each retired the session that met it)."""
    by_thread = {}

    def on_send(sender, recipients, data):
        by_thread.setdefault(threading.current_thread().name, []).append(
            int(recipients[0][1:].partition("@")[0])
        )

    p, sent = pool(size=2, delay=0.02, on_send=on_send)
    p.threaded = True
    bad = {3, 4, 5}
    batch = jobs(40, bad=bad)
    with caplog.at_level(logging.WARNING, "s3outbox"), p:
        p.deliver(batch)
    for job in batch:
        if job.key in bad:
            assert job.outcome.kind == Kind.PERMANENT
            assert "cannot build the message: ValueError: broken" in job.outcome.error
        else:
            assert job.outcome.kind == Kind.SENT, job.outcome
    assert len(sent) == 37 and p.size == 2 and p.orphans == []
    # Each session's thread sent mail after the last broken message.
    assert len(by_thread) == 2
    assert all(max(numbers) > 5 for numbers in by_thread.values())
    assert "cannot be built" in caplog.text and caplog.records[0].exc_info


def test_session_the_server_will_not_take_hands_its_job_back():
    """A server that caps sessions per client: the extra session hands its
    job to the connected one and retires; nothing fails."""
    opened = []
    limit = Outcome(Kind.CONFIG, 421, "the server is not available: 421 too many connections")

    def on_open():
        opened.append(1)
        return limit if len(opened) > 1 else None

    p, sent = pool(size=3, delay=0.03, on_open=on_open)
    p.threaded = True
    batch = jobs(12)
    with p:
        p.deliver(batch)
    assert all(j.outcome.kind == Kind.SENT for j in batch)
    assert len(sent) == 12 and p.config_error is None and p.size < 3


def test_a_bug_in_the_transport_is_a_retry_with_a_traceback(caplog):
    def on_send(sender, recipients, data):
        raise AttributeError("a programming error")

    p, sent = pool(on_send=on_send)
    batch = jobs(1)
    with caplog.at_level(logging.ERROR, "s3outbox"):
        p.deliver(batch)
    assert batch[0].outcome.kind == Kind.TRANSIENT
    assert "internal error: a programming error" in batch[0].outcome.error
    assert caplog.records[0].exc_info


def test_sessions_retiring_in_a_batch_leave_one_that_ends_it():
    """Sessions retire in a threaded batch while jobs remain: the pass still
    ends and each job goes out once, on a session left connected.

    The state comes from the race of a session added just as another
    retires (forced in the first batch as in the test above): three
    sessions made, the second retired, the third open. In the next batch
    the server hangs up the first and refuses every new session (too many
    connections: the third counts), so the first hands its jobs back and
    retires; the third's thread sends the rest. Before 91b781f the third had
    no thread there, both threads retired, nothing read the queue any more
    and the producer waited for a free place forever."""
    sent, sessions = [], []
    too_many = Outcome(Kind.CONFIG, 421, "the server is not available: 421 too many connections")
    third_wanted, refusing = threading.Event(), threading.Event()

    def on_open(number):
        if number == 1:  # the second session: retires once the third is under way
            third_wanted.wait(5)
            return too_many
        return too_many if refusing.is_set() else None

    def on_send(number):
        if number == 0:  # the first session holds its job: the queue stays full
            third_wanted.wait(5)

    p = SessionPool(
        snapshot(transport=numbered(sessions, sent, on_open, on_send, lambda: p, third_wanted)), 3
    )
    p.threaded = True
    first, second = jobs(12), jobs(30)
    p.deliver(first)
    assert len(p.sessions) == 3 and p.size == 2 and sessions[2].is_open
    sessions[0].drop()
    refusing.set()
    delivery = threading.Thread(target=p.deliver, args=(second,), daemon=True)
    delivery.start()
    delivery.join(10)
    assert not delivery.is_alive(), "the delivery pass never ended"
    p.close()
    assert all(j.outcome.kind == Kind.SENT and j.done for j in first + second)
    assert sorted(s[1][0] for s in sent) == sorted(j.recipients[0] for j in first + second)
    assert p.orphans == [] and p.config_error is None


def test_a_session_made_as_another_retires_keeps_within_size_and_works():
    """The race of a session added just as another retires, forced: with
    size 3, the producer takes the third place while the second session is
    refused (421: the server takes two connections of ours and another
    worker holds one); the second retires before the third is made, and
    the third opens once the other worker's connection has ended.

    Then, and in the next batch, at most ``size`` (now 2) sessions are open,
    each open one sends (none holds a server slot idle) and the refused one
    is not tried again. Before, the retired second had a thread again in
    the next batch and was refused again (a 421 every batch), while the
    third stayed open with no thread."""
    sent, sessions, refused, open_at_most = [], [], [], []
    too_many = Outcome(Kind.CONFIG, 421, "the server is not available: 421 too many connections")
    server = {"others": 1, "batch": 1}  # connections another worker holds
    third_wanted = threading.Event()
    sending = {}  # batch -> the sessions that sent in it

    def on_open(number):
        if number == 1:  # refused once the producer has chosen to add a third
            third_wanted.wait(5)
            wait_for(lambda: sessions[0].is_open, timeout=5, step=0.001)
        ours = sum(s.is_open for s in sessions)
        if ours + server["others"] >= 2:
            refused.append(number)
            server["others"] = 0  # the other worker's connection ends
            return too_many
        open_at_most.append((ours + 1, p.size))
        return None

    def on_send(number):
        if number == 0:  # the first session holds its job: the queue stays full
            third_wanted.wait(5)
        sending.setdefault(server["batch"], set()).add(number)

    p = SessionPool(
        snapshot(transport=numbered(sessions, sent, on_open, on_send, lambda: p, third_wanted)), 3
    )
    p.threaded = True
    first, second = jobs(12), jobs(30)
    p.deliver(first)
    assert len(p.sessions) == 3 and p.size == 2 and sessions[2].is_open
    assert refused == [1] and sessions[1].opened == 1
    server["batch"] = 2
    delivery = threading.Thread(target=p.deliver, args=(second,), daemon=True)
    delivery.start()
    delivery.join(10)
    assert not delivery.is_alive(), "the delivery pass never ended"
    assert refused == [1] and sessions[1].opened == 1, "the retired session was tried again"
    assert sending[2] == {0, 2}, "an open session sent nothing in the batch"
    assert all(ours <= size for ours, size in open_at_most), open_at_most
    p.close()
    assert all(j.outcome.kind == Kind.SENT and j.done for j in first + second)
    assert sorted(s[1][0] for s in sent) == sorted(j.recipients[0] for j in first + second)
    assert p.orphans == [] and p.config_error is None


def test_threads_ended_by_an_exception_no_job_catches_leave_the_rest_to_the_caller(
    monkeypatch,
):
    """A site's transport that raises SystemExit ends its thread (a job
    catches Exception only). Once no thread is left the jobs not taken go
    out in the calling thread and the pass ends; before 91b781f the producer
    waited for a free place forever."""
    ended = []
    monkeypatch.setattr(threading, "excepthook", lambda args: ended.append(args.exc_type))

    def on_send(sender, recipients, data):
        if threading.current_thread() is not delivery:  # the pool's threads
            raise SystemExit("the site's transport exits")

    p, sent = pool(size=3, delay=0.02, on_send=on_send)
    p.threaded = True
    batch = jobs(20)
    delivery = threading.Thread(target=p.deliver, args=(batch,), daemon=True)
    with p:
        delivery.start()
        delivery.join(10)
    assert not delivery.is_alive(), "the delivery pass never ended"
    # Each thread ended under the job it took, and the one it took next if waiting.
    taken = [j for j in batch if not j.done]
    assert ended == [SystemExit] * len(ended) and 1 <= len(ended) <= 3
    assert len(ended) <= len(taken) <= 2 * len(ended)
    assert all(j.outcome is None for j in taken)
    assert all(j.outcome.kind == Kind.SENT for j in batch if j.done)
    assert len(sent) == 20 - len(taken)
