"""One delivery pass: claim due mail in batches, send it over a pool of
transport sessions, and record what happened to every message.

The one rule: a message fails only for reasons about itself (a 5xx for its
recipients or data, too big, expired, or its own 4xx replies past
max_attempts/max_age). Anything about the settings or the server (unreachable,
connect timeout, refused, DNS, TLS, authentication, 421 from a fresh session)
holds the mail with the reason, never charging its attempts or its age; a 421
on a session that has answered a message only ends that session
(transport/smtp.py).

Holds are per settings fingerprint and host (a ``Hold``, holds.py, with its
reason and ``probe_after``), and so is the time those settings last reached
the server from that host. While held, new mail is held too without touching
the network; after ``probe_after`` one worker probes the server without a
message. Only a worker whose own settings reached the server releases held
mail, and a worker whose settings fail claims nothing while another host's
settings work, so hosts with different settings do not flip mail between
held and queued.
"""

import dataclasses
import datetime
import functools
import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator

from ..transport.base import Kind, Outcome
from . import holds, returnpath
from . import message as mime
from .check import Mailer, log_settings_check
from .policy import decide
from .pool import Job, SessionPool
from .settings import Snapshot, Storage
from .store import Logged, Row, utcnow
from .wire import message_bytes

logger = logging.getLogger("s3outbox")

# Seconds after which finished results are written when the pool takes the
# next message (see Pass._send).
RECORD_EVERY = 0.25

# Claimed rows with their Job (or the Outcome that ended them unsent), and
# with their final Outcome, ready to record.
Results = list[tuple[Row, Job | Outcome]]
Finished = list[tuple[Row, Outcome]]


def worker_name(settings: Storage) -> str:
    return settings.worker_name or "%s#%s" % (socket.gethostname(), os.getpid())


def _finished(results: Results, everything: bool = False) -> Finished:
    """Take the (row, Outcome) pairs whose outcome is final out of ``results``
    (pairs of row and Job or Outcome), in order; all of them when the pool
    is done (``everything``)."""
    done: Finished = []
    pending: Results = []
    for row, r in results:
        if not isinstance(r, Job):
            done.append((row, r))
        elif r.done or everything:
            assert r.outcome is not None  # the pool gives every job it took one
            done.append((row, r.outcome))
        else:
            pending.append((row, r))
    results[:] = pending
    return done


class NoAddress(LookupError):
    """A person entity without a usable e-mail address."""


def _contact(pe_id: int, contacts: dict[int, str]) -> str:
    """The e-mail address of person entity ``pe_id``; NoAddress if it has none."""
    address = contacts.get(pe_id)
    if not address:
        raise NoAddress("no e-mail address for person entity %s" % pe_id)
    if not mime.ADDRESS_RE.match(mime.bare(address)):
        raise NoAddress(
            "the e-mail contact %r of person entity %s is not an address" % (address, pe_id)
        )
    return address


def _unreadable(exc: Exception) -> Outcome:
    logger.warning("a stored message cannot be read", exc_info=exc)
    return Outcome(
        Kind.PERMANENT, None, "cannot read the stored message: %s: %s" % (type(exc).__name__, exc)
    )


def _why(outcome: Outcome) -> str:
    """An outcome's error text: a site's transport may give none, and a hold
    needs its reason (without one, the hold would not hold)."""
    return outcome.error or "the transport gave no reason (%s)" % outcome.kind


class Pass:
    """A delivery pass for one MailS3; ``run(limit)`` returns its counts."""

    def __init__(self, mail: Mailer) -> None:
        self.mail = mail
        self.store = mail.store
        self.snapshot = Snapshot(mail.settings)
        # The delivery settings as read (settings.read_values): never raw.
        self.settings = self.snapshot.values
        self.fp = self.snapshot.fingerprint()
        self.worker = worker_name(self.settings)
        # Holds and reaches are per settings and host (the worker name before
        # '#'): the same settings may reach the server from one host only.
        host = self.worker.partition("#")[0].encode("utf-8")
        self.host = hashlib.sha256(host).hexdigest()[:8]
        self.key = holds.key(self.fp, self.host)
        self._resolved: dict[int, str] = {}  # {row id: address found for its pe_id}
        # {key: when it last reached the server}, read once
        self._seen: dict[str, datetime.datetime] | None = None
        self._recorded_at = 0.0  # time.monotonic() of the last write (_send)
        self.counts = dict(
            sent=0, retry=0, failed=0, held=0, refused=0, deferred=0, released=0, connections=0
        )

    def run(self, limit: int | None = None) -> dict[str, int]:
        """Run the pass; its counts. Commits its own work."""
        # The pass is a transaction too, to end its last read: on MariaDB
        # (REPEATABLE READ) an open one would hide mail queued later from this
        # worker's next pass. A failure rolls back whatever was left open.
        self._log_settings()
        with self.store.transaction():
            return self._run(limit)

    def _log_settings(self) -> None:
        """Log settings that cannot be used, once per change, by whichever
        process meets the change first (web or worker). A process that loses
        the race for the state row leaves it to the winner."""
        try:
            with self.store.transaction():
                log_settings_check(self.mail)
        except Exception as e:  # the pass goes on; a lost race raises the driver's own error
            logger.info(
                "settings check left to another process: %s: %s",
                type(e).__name__,
                e,
                exc_info=True,
            )

    def _run(self, limit: int | None) -> dict[str, int]:
        """Decide whether this worker can send (``_reason``), then claim and
        send batch after batch, or hold what it claims, with the reason."""
        now = utcnow()
        self.store.requeue_expired(now, self.settings.max_attempts)
        due, held_mail = self.store.pending(now)
        if not (due or held_mail):
            return self.counts
        reason = self._reason(now, held_mail)
        due = due or self.counts["released"] > 0
        if not due or (reason is not None and self._others_work(now)):
            return self.counts  # a worker whose settings fail leaves mail to others
        with SessionPool(self.snapshot, self.settings.sessions) as pool:
            self._batches(pool, limit, reason)
            self.counts["connections"] += pool.connections
            if pool.config_error is not None:
                self._hold(_why(pool.config_error), probe=True)
            elif pool.reached:
                self._reached(utcnow())
        if reason is not None and self.counts["held"]:
            self._hold(reason, probe=self.snapshot.blocking_problem() is None)
        return self.counts

    def _batches(self, pool: SessionPool, limit: int | None, reason: str | None) -> None:
        """Claim and send (or, with a ``reason``, hold) batch after batch;
        stop early once these settings fail while another host's work."""
        rate = self.settings.rate_limit
        done = 0
        while limit is None or done < limit:
            size = (
                self.settings.batch_size
                if limit is None
                else min(self.settings.batch_size, limit - done)
            )
            owner = "%s/%s" % (self.worker, uuid.uuid4().hex[:12])
            if done:  # a long pass takes back the rows of workers that died
                self.store.requeue_expired(utcnow(), self.settings.max_attempts)
            rows = self.store.claim(owner, size, self.settings.lease, utcnow(), rate)
            if not rows:
                return
            done += len(rows)
            if reason is None and pool.config_error is None:
                outcomes = self._send(pool, rows, owner)
            else:
                why = reason if pool.config_error is None else reason or _why(pool.config_error)
                outcomes = [(row, Outcome(Kind.CONFIG, None, why)) for row in rows]
            self._record(owner, outcomes)
            if pool.config_error is not None and self._others_work(utcnow()):
                return

    # ----------------------------------------------------- hold and release
    def _reason(self, now: datetime.datetime, held_mail: bool) -> str | None:
        """Why this worker cannot send now, or None (then held mail, if any,
        has been released).

        The settings check needs no network. A hold of these settings stands
        until its ``probe_after``; then one worker probes (a session, MAIL
        FROM, RSET: no message is touched). Settings that have not reached
        the server lately are probed first when mail is held or another
        worker's settings work: only a worker whose settings reached the
        server releases held mail, and a worker whose settings fail takes
        no mail from one whose settings work.
        """
        reason = self.snapshot.blocking_problem()
        if reason is not None:
            if held_mail:  # held for an earlier problem maybe: name this one
                self._hold(reason, probe=False)
            return reason
        held, self._seen = self.store.read_holds()
        mine = held.get(self.key)
        if mine is not None:
            if not mine.due(now) or not self._claim_probe(mine, now):
                return mine.reason
            return self._probe(now, held_mail)
        last = self._seen.get(self.key)
        if (last is None or self._stale(last, now)) and (held_mail or self._others_work(now)):
            return self._probe(now, held_mail)
        if held_mail:
            self._release(now)
        return None

    def _probe(self, now: datetime.datetime, held_mail: bool) -> str | None:
        """Try the server without a message; on success release held mail."""
        session = self.snapshot.transport()
        failed = session.probe(mime.bare(self.snapshot.sender or ""))
        self.counts["connections"] += session.opened
        if failed is not None:
            self._hold(_why(failed), probe=True)
            return _why(failed)
        self.store.mark_reached(self.key, now, unhold=True)
        if held_mail:
            self._release(now)
        return None

    def _release(self, now: datetime.datetime) -> None:
        released = self.store.release_held(now=now)
        if released:
            logger.info("mail is going out again: %d held message(s) released", released)
        self.counts["released"] += released

    def _reached(self, now: datetime.datetime) -> None:
        """Note that these settings reached the server; written at most every
        tenth of ``probe_interval``, not on every pass of a busy worker."""
        last = (self._seen or {}).get(self.key)
        if last is None or (now - last).total_seconds() >= self.settings.probe_interval / 10.0:
            self.store.mark_reached(self.key, now)

    def _stale(self, when: datetime.datetime, now: datetime.datetime) -> bool:
        return (now - when).total_seconds() > self.settings.probe_interval

    def _others_work(self, now: datetime.datetime) -> bool:
        """Whether another host's settings reached the server within
        ``probe_interval`` (this host's earlier settings do not count: the
        admin changed them)."""
        if self._seen is None:
            self._seen = self.store.read_holds()[1]
        return any(
            holds.host_of(key) != self.host and not self._stale(when, now)
            for key, when in self._seen.items()
        )

    def _claim_probe(self, hold: holds.Hold, now: datetime.datetime) -> bool:
        """Take the probe turn (one worker wins) and push the next one out."""
        later = hold.probing_at(now + datetime.timedelta(seconds=self.settings.probe_interval))
        return self.store.take_probe(hold, later, now)

    def _hold(self, reason: str, probe: bool) -> None:
        """Record why these settings cannot deliver; logged once per reason.
        ``probe``: try again after probe_interval (an outage may end); without
        it only a change of the settings helps."""
        now = utcnow()
        old = self.store.get_hold(self.key)
        after = (
            now + datetime.timedelta(seconds=self.settings.probe_interval)
            if probe
            else holds.NEVER
        )
        if old is None or old.reason != reason:
            logger.error("outgoing mail is held: %s", reason)
            # The rows and the banner follow the problem of the settings now.
            self.store.reword_held(reason)
        elif probe and not old.due(now):
            after = old.probe_after  # the probe turn already set stands
        hold = holds.Hold(self.fp, self.host, reason, after)
        if hold != old:
            self.store.put_hold(hold, now)

    # ------------------------------------------------------------ sending
    def _send(self, pool: SessionPool, rows: list[Row], owner: str) -> Finished:
        """Send claimed rows; return [(row, Outcome)] not recorded yet.

        Outcomes are recorded as the batch goes: whenever the pool takes the
        next message and RECORD_EVERY seconds have passed since the last
        write, the finished ones are written. So a worker that dies leaves
        unrecorded the mail finished since then and the mail still on the
        wire (one slow message can stretch that beyond RECORD_EVERY): the
        only mail another worker may send again.
        """
        results: Results = []
        self._recorded_at = time.monotonic()
        pool.deliver(self._jobs(rows, results, owner))
        return _finished(results, everything=True)

    def _jobs(self, rows: list[Row], results: Results, owner: str) -> Iterator[Job]:
        """Yield a Job per sendable row (lazily, so attachments load one at a
        time) and append (row, Job or Outcome) to ``results``."""
        now = utcnow()
        # Every pe_id row, also one whose address an earlier attempt recorded:
        # the address is looked up again at each delivery.
        contacts = self._contacts([r.pe_id for r in rows if r.pe_id])
        for row in rows:
            self._record_due(results, owner)
            job = self._job(row, contacts, now)
            results.append((row, job))
            if isinstance(job, Job):
                yield job
        # The pool asks once more (it looks one job ahead, for pipelining)
        # while the last job is still to go.
        self._record_due(results, owner)

    def _record_due(self, results: Results, owner: str) -> None:
        """Record the finished results once RECORD_EVERY seconds have passed."""
        if time.monotonic() - self._recorded_at >= RECORD_EVERY:
            finished = _finished(results)
            if finished:
                self._record(owner, finished)
            self._recorded_at = time.monotonic()

    def _job(self, row: Row, contacts: dict[int, str], now: datetime.datetime) -> Job | Outcome:
        """The Job for ``row``, or the Outcome that ends it unsent: expired,
        unreadable, or a pe_id without a usable address."""
        if row.expires_on and row.expires_on < now:
            return Outcome(Kind.PERMANENT, None, "expired unsent at %s" % row.expires_on)
        try:
            msg = self.store.message(row)
            left = mime.loads(row.deferred_rcpts)  # the recipients still to deliver to
            if not msg.recipients() and row.pe_id and not left:
                address = _contact(row.pe_id, contacts)
                msg = dataclasses.replace(msg, to=(address,))
                self._resolved[row.id] = mime.bare(address)[:255]
            if row.attachment_count:
                msg = dataclasses.replace(msg, attachments=self._attachments(row))
        except NoAddress as e:
            return Outcome(Kind.PERMANENT, None, str(e))
        except Exception as e:  # noqa: BLE001 (a row that cannot be read fails alone, logged)
            return _unreadable(e)
        sender = row.sender or self.snapshot.sender or ""  # a sender: blocking_problem()
        recipients = list(left) if left else msg.recipients()
        return Job(
            row.id, self._envelope(row, sender), recipients, self._builder(row, msg, sender)
        )

    def _envelope(self, row: Row, sender: str) -> str:
        """The envelope sender: ``local+TOKEN@domain`` of the bounce address
        (returnpath.py), so a report names its message; else the sender."""
        address = self.snapshot.return_path
        if address is None:
            return mime.bare(sender)
        secret = returnpath.key(self.store)
        return returnpath.envelope(address, returnpath.token(secret, row.id, row.message_id))

    def _attachments(self, row: Row) -> tuple[mime.Attachment, ...]:
        """The row's attachments; ValueError when some are not stored (a
        message never sent without the attachments it was queued with)."""
        found = self.store.attachments(row.id)
        if len(found) < row.attachment_count:
            raise ValueError(
                "%d of its %d attachment(s) are not in the outbox"
                % (row.attachment_count - len(found), row.attachment_count)
            )
        return found

    def _builder(self, row: Row, msg: mime.Message, sender: str) -> Callable[[], bytes]:
        """A function that makes the wire bytes."""
        dkim = self.snapshot.dkim
        date = row.created_on.replace(tzinfo=datetime.UTC)

        def build() -> bytes:
            return message_bytes(msg, sender, row.message_id, date, dkim)

        return build

    def _contacts(self, pe_ids: list[int]) -> dict[int, str]:
        """{pe_id: address} from Sahana's pr_contact, first by priority."""
        db = self.store.db
        if not pe_ids or "pr_contact" not in db.tables:
            return {}
        c = db.pr_contact
        query = (c.pe_id.belongs(set(pe_ids))) & (c.contact_method == "EMAIL")
        if "deleted" in c.fields:
            query &= c.deleted == False  # noqa: E712
        found: dict[int, str] = {}
        order = c.priority | c.id if "priority" in c.fields else c.id
        for r in db(query).select(c.pe_id, c.value, orderby=order):
            found.setdefault(r.pe_id, r.value)
        return found

    # ---------------------------------------------------------- recording
    def _record(self, owner: str, outcomes: Finished) -> None:
        """Write the decision for each (row, Outcome); count and log it."""
        now = utcnow()
        results = []
        for row, out in outcomes:
            decision = decide(
                row,
                out,
                self.settings,
                now,
                self.fp,
                address=self._resolved.pop(row.id, None),  # see _job
                held_seconds=functools.partial(self.store.held_seconds, row.id, now),
            )
            self.counts[decision.logged] += 1
            if out.refused:
                self.counts["refused"] += len(out.refused)
            changes = decision.changes  # a dict where out.deferred: not a plain success
            if out.deferred and isinstance(changes, dict) and changes.get("deferred_rcpts"):
                self.counts["deferred"] += len(out.deferred)
            if decision.logged == Logged.FAILED:
                logger.warning(
                    "message %s to %s failed: %s",
                    row.message_id,
                    row.address or "pe_id %s" % row.pe_id,
                    decision.attempt["error"],
                )
            results.append((row.id, decision.changes, decision.attempt))
        self.store.record(owner, now, self.worker, results)
