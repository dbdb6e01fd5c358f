"""The session pool: up to ``size`` transport sessions kept open for a whole
delivery pass, sending jobs inline while the server is fast and over
threads once it is slow. It uses only the transport interface.
"""

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from ..transport.base import Envelope, Kind, Next, Outcome, Transport
from .message import bare

logger = logging.getLogger("s3outbox")

# Jobs in a row slower than the pool's patience before it turns to threads.
SLOW_JOBS = 3


class Job:
    """One message to send: envelope, a builder for its bytes, and the result.

    ``data`` holds the bytes from when they are built (``build`` is dropped
    then, with the attachments it holds) until the job is done. ``done``
    turns True once ``outcome`` is final (a retry on a new connection may
    replace an earlier outcome), so another thread may record it then.
    """

    __slots__ = ("key", "sender", "recipients", "build", "data", "outcome", "done")

    def __init__(
        self, key: int, sender: str, recipients: list[str], build: Callable[[], bytes] | None
    ) -> None:
        self.key, self.sender, self.recipients = key, sender, recipients
        self.build = build
        self.data: bytes | None = None
        self.outcome: Outcome | None = None
        self.done = False


class Sessions(Protocol):
    """What the pool needs of the settings in force (delivery's Snapshot)."""

    sender: str | None

    def transport(self) -> Transport: ...


class Step(enum.Enum):
    """What became of a job on one session (``SessionPool._run``)."""

    DONE = "done"  # job.outcome is final
    HANDED_BACK = "handed back"  # this session cannot open while others are
    #                            connected: it retired, its jobs wait for them


class SessionPool:
    """Up to ``size`` sessions, kept open for a whole delivery pass.

    ``deliver(jobs)`` sends every job and fills in ``job.outcome``. After an
    outcome that is not about a message (``config_error``: the settings, or
    a server that cannot be reached or takes no session now) no further
    connection is tried in this pool: the remaining jobs get that outcome,
    so a broken setup or a dead server costs one connection, not one per
    message. ``reached`` says a session opened (our settings work there).
    With size 1 everything runs in the calling thread.

    Sessions are counted in slots under one lock: a session is made only
    into a free slot, and one the server will not take while others are
    connected retires, giving its slot up and lowering ``size`` to the
    sessions left. So open sessions never outnumber ``size``, whatever the
    order of a new session and a retiring one, and every session not
    retired has a thread in each threaded batch: none holds one of the
    server's places through a batch without work, and one refused is not
    tried again in this pass.
    """

    def __init__(self, snapshot: Sessions, size: int | None = 1) -> None:
        self.snapshot = snapshot
        # The most sessions at once: as configured, lowered to as many as the server takes.
        self.size = max(1, int(size or 1))
        self.sessions: list[Transport] = []  # every session made (``connections`` counts them)
        self._live: list[Transport] = []  # those not retired, each used by one thread
        self._slots = 0  # the live sessions and the one being made: at most size
        self.sender = bare(snapshot.sender or "")
        self.config_error: Outcome | None = None
        self.reached = False
        self.orphans: list[Job] = []  # jobs handed back by sessions the server would not take
        self.patience = 0.01  # seconds a full queue may wait before a new session
        self.threaded = False  # True once jobs were slow: sessions run in threads
        self._slow = 0  # consecutive jobs that took longer than patience
        self._lock = threading.Lock()

    @property
    def connections(self) -> int:
        return sum(s.opened for s in self.sessions)

    def __enter__(self) -> "SessionPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for session in self.sessions:
            session.close()

    # ------------------------------------------------------------- one job
    def _run(
        self, session: Transport, job: Job, alone: bool = True, then: Job | None = None
    ) -> Step:
        """Send ``job`` on ``session``, opening or re-opening it once; a Step.

        Not ``alone``, a session that cannot open while others are connected
        (the server caps sessions per client) hands the job back. ``then`` is
        the job the caller sends next on this session: the transport may
        start on it (pipelining).
        """
        if self.config_error is not None:
            job.outcome = self.config_error
            return Step.DONE
        data = self._build(job)
        if data is None:
            return Step.DONE
        ahead = self._ahead(then)
        for _ in range(2):
            if not session.is_open:
                failed = session.open()
                if failed is not None:
                    if not alone and self._retire(session, job, then):
                        return Step.HANDED_BACK
                    self._stop(failed)
                    job.outcome = failed
                    return Step.DONE
                self.reached = True
            job.outcome = self._send(session, job, data, ahead)
            # A connection that died under this job, or that the server
            # ended (a 421 after answering a message), is re-opened once for
            # it; dropped again, the job is retried later (a server that is
            # gone shows when the next job cannot connect).
            if job.outcome.kind != Kind.TRANSIENT or session.is_open:
                return Step.DONE
        return Step.DONE

    @staticmethod
    def _build(job: Job) -> bytes | None:
        """The job's bytes, built once, or None with a permanent outcome: a
        message that cannot be built fails alone."""
        if job.build is not None:
            build, job.build = job.build, None
            try:
                job.data = build()
            except Exception as e:
                logger.warning("message %s cannot be built", job.key, exc_info=True)
                job.outcome = Outcome(
                    Kind.PERMANENT,
                    None,
                    "cannot build the message: %s: %s" % (type(e).__name__, e),
                )
        return job.data

    def _ahead(self, then: Job | None) -> Next | None:
        """For the transport, a function that builds the next job (built
        while this one is on the wire): (sender, recipients, data) or None."""
        if then is None:
            return None

        def build() -> Envelope | None:
            data = self._build(then)
            if data is None:
                return None
            return then.sender, then.recipients, data

        return build

    def _send(self, session: Transport, job: Job, data: bytes, ahead: Next | None) -> Outcome:
        outcome = session.send(job.sender, job.recipients, data, ahead)
        if outcome.kind != Kind.CONFIG:
            return outcome
        if job.sender != self.sender and (outcome.code or 0) >= 500:
            # The server refused this message's own sender, not ours.
            return Outcome(
                Kind.PERMANENT,
                outcome.code,
                "%s (the sender given to send() for this message)"
                % (outcome.error or "sender refused"),
            )
        self._stop(outcome)
        return outcome

    def _run_safely(
        self, session: Transport, job: Job, alone: bool = True, then: Job | None = None
    ) -> Step:
        """_run(), turning a bug into a retry with its traceback logged."""
        try:
            step = self._run(session, job, alone, then)
        except Exception as e:  # never lose a job to a bug
            logger.exception("internal error while sending message %s", job.key)
            job.outcome = Outcome(Kind.TRANSIENT, None, "internal error: %s" % e)
            step = Step.DONE
        if step is Step.DONE:
            job.data = None  # its bytes are not needed again
        return step

    def _session(self) -> Transport | None:
        """A new session in a free slot, or None when ``size`` are live."""
        with self._lock:
            if self._slots >= self.size:
                return None
            self._slots += 1  # taken before the session is made: a retiring one sees it
        session = self.snapshot.transport()
        with self._lock:
            self.sessions.append(session)
            self._live.append(session)
        return session

    def _retire(self, session: Transport, job: Job, then: Job | None) -> bool:
        """Whether ``session``, which cannot open, retires: only while another
        live session is connected (then the server takes no more of ours),
        handing back ``job`` and ``then``, freeing its slot and lowering
        ``size`` to the sessions left. The last live session never retires,
        so a batch always has a thread reading its queue."""
        with self._lock:
            if not any(s.is_open for s in self._live if s is not session):
                return False
            self._live.remove(session)
            self._slots -= 1
            self.size = self._slots
            self.orphans.extend([job] + ([then] if then else []))
            return True

    def _stop(self, outcome: Outcome) -> None:
        """No more connections in this pool after ``outcome`` (not about a message)."""
        with self._lock:
            self.config_error = self.config_error or outcome

    # ------------------------------------------------------------ many jobs
    def deliver(self, jobs: Iterable[Job]) -> None:
        """Send ``jobs`` (an iterable, consumed lazily) over the pool.

        Jobs go over one session in the calling thread while they take less
        than ``patience``: a near, fast server is best served so, as threads
        would only add handoffs of the GIL. Once ``SLOW_JOBS`` jobs in a row
        take longer (a far relay), the rest of this pool's jobs are spread over
        threads. Only a run of slow jobs counts: on a busy host a single job
        can wait tens of milliseconds for a CPU, and threads would then only
        add contention for good.
        """
        remaining = iter(jobs)
        if not self.sessions:
            self._session()
        if not self.threaded:
            self._deliver_inline(remaining)
        if self.threaded:
            self._deliver_threaded(remaining)

    def _deliver_inline(self, jobs: Iterator[Job]) -> None:
        """Send jobs in this thread until they run out or turn slow, each
        with the next one as ``then``."""
        session = self._live[0]
        job = next(jobs, None)
        while job is not None:
            following = next(jobs, None)
            started = time.monotonic()
            self._run_safely(session, job, then=following)
            job.done = True
            slow = time.monotonic() - started > self.patience
            self._slow = self._slow + 1 if slow else 0
            if self.size > 1 and self._slow >= SLOW_JOBS:
                self.threaded = True
                if following is not None:  # under way on this session
                    self._run_safely(session, following)
                    following.done = True
                return
            job = following

    def _deliver_threaded(self, jobs: Iterator[Job]) -> None:
        """Send jobs over up to ``size`` sessions, each in its own thread.

        A session retires only while another is connected, so one thread
        reads the queue until the end; should none be left all the same (a
        thread ended by an exception no job catches), the jobs not sent yet
        join those handed back, sent afterwards in this thread.
        """
        work: queue.Queue[Job | None] = queue.Queue(maxsize=self.size * 2)  # bounds memory
        threads: list[threading.Thread] = []
        # The sessions of earlier batches go back to work at once, each in a thread.
        for session in list(self._live):
            self._start(session, work, threads)
        try:
            for job in jobs:
                if not self._queue(job, work, threads):
                    self.orphans.extend([job, *jobs])
                    break
        finally:
            for _ in threads:
                self._queue(None, work, threads)  # retired sessions leave theirs unread
            for t in threads:
                t.join()
        self.orphans.extend(job for job in _drain(work) if job is not None)
        self._finish_orphans()

    def _queue(
        self, job: Job | None, work: "queue.Queue[Job | None]", threads: list[threading.Thread]
    ) -> bool:
        """Put ``job`` in ``work``; False if no thread is left to read it.

        Another session opens only while the open ones fall behind: a fast
        local server keeps one, a slow relay gets up to size.
        """
        while any(t.is_alive() for t in threads):
            try:
                work.put(job, timeout=self.patience)
                return True
            except queue.Full:
                if job is not None:
                    session = self._session()
                    if session is not None:
                        self._start(session, work, threads)
        return False

    def _start(
        self, session: Transport, work: "queue.Queue[Job | None]", threads: list[threading.Thread]
    ) -> None:
        thread = threading.Thread(target=self._worker, args=(session, work), daemon=True)
        threads.append(thread)
        thread.start()

    def _worker(self, session: Transport, work: "queue.Queue[Job | None]") -> None:
        """A thread's loop: jobs from ``work`` on ``session`` until told to end,
        or until the server will not take this session (then it retires).
        A job already waiting goes with the one before as its ``then``."""
        job = work.get()
        while job is not None:
            try:
                following = work.get_nowait()  # a Job, or None: the end
                waiting = True
            except queue.Empty:
                following, waiting = None, False
            if self._run_safely(session, job, False, following) is Step.HANDED_BACK:
                return
            job.done = True
            job = following if waiting else work.get()

    def _finish_orphans(self) -> None:
        """Send the jobs handed back, on a session that is still connected."""
        for job in self.orphans:
            session = next((s for s in self._live if s.is_open), self._live[0])
            self._run_safely(session, job)
            job.done = True
        self.orphans = []


def _drain(work: "queue.Queue[Job | None]") -> Iterator[Job | None]:
    """What is left in ``work`` once no thread reads it."""
    while not work.empty():
        yield work.get_nowait()
