# -*- coding: utf-8 -*-
"""One delivery pass: claim due mail in batches, send it over a pool of
transport sessions, and record what happened to every message.

Held mail (a configuration error) is tracked in the state row ``held``:
``{"fp": settings fingerprint, "reason": text, "probe_after": time}``.
While it is set and the settings are unchanged, new mail is held too without
touching the network; once ``probe_after`` passes, one held message is tried
again (an outage may be over). A changed fingerprint or any success releases
everything held.
"""

import dataclasses
import datetime
import logging
import os
import socket
import time
import uuid

from . import message as mime
from .policy import decide
from .pool import Job, SessionPool
from .settings import Snapshot
from .store import Logged, utcnow
from .transport import Kind, Outcome

logger = logging.getLogger("s3outbox")

# Seconds after which finished results are written when the pool takes the
# next message (see Pass._send).
RECORD_EVERY = 0.25


def worker_name(settings):
    return settings.worker_name or "%s#%s" % (socket.gethostname(), os.getpid())


def parse_rate(rate):
    """'100/hour' -> (100, 3600); None or '' -> None."""
    if not rate:
        return None
    count, _, unit = str(rate).partition("/")
    seconds = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
    unit = unit.strip().lower().rstrip("s") or "hour"
    if unit not in seconds or not count.strip().isdigit():
        raise ValueError("rate_limit %r is not like '100/hour'" % (rate,))
    return int(count), seconds[unit]


def _finished(results, everything=False):
    """Take the (row, Outcome) pairs whose outcome is final out of ``results``
    (pairs of row and Job or Outcome), in order; all of them when the pool
    is done (``everything``)."""
    done, pending = [], []
    for row, r in results:
        if not isinstance(r, Job):
            done.append((row, r))
        elif r.done or everything:
            done.append((row, r.outcome))
        else:
            pending.append((row, r))
    results[:] = pending
    return done


class NoAddress(LookupError):
    """A person entity without a usable e-mail address."""


def _contact(pe_id, contacts):
    """The e-mail address of person entity ``pe_id``; NoAddress if it has none."""
    address = contacts.get(pe_id)
    if not address:
        raise NoAddress("no e-mail address for person entity %s" % pe_id)
    if not mime.ADDRESS_RE.match(mime.bare(address)):
        raise NoAddress("the e-mail contact %r of person entity %s is not an "
                        "address" % (address, pe_id))
    return address


def _unreadable(exc):
    logger.warning("a stored message cannot be read", exc_info=exc)
    return Outcome(Kind.PERMANENT, None, "cannot read the stored message: %s: %s"
                   % (type(exc).__name__, exc))


def _time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")


class Pass(object):
    """A delivery pass for one MailS3; ``run(limit)`` returns its counts."""

    def __init__(self, mail):
        self.mail = mail
        self.settings = mail.settings
        self.store = mail.store
        self.snapshot = Snapshot(mail.settings)
        self.fp = self.snapshot.fingerprint()
        self.worker = worker_name(mail.settings)
        self.counts = dict(sent=0, retry=0, failed=0, held=0, refused=0,
                           released=0, connections=0)

    def run(self, limit=None):
        """Run the pass; its counts. Commits its own work."""
        # The pass is a transaction too, to end its last read: on MariaDB
        # (REPEATABLE READ) an open one would hide mail queued later from this
        # worker's next pass. A failure rolls back whatever was left open.
        with self.store.transaction():
            return self._run(limit)

    def _run(self, limit):
        """Release or probe held mail, then claim, send and record batches
        until nothing is due (or ``limit`` messages were claimed)."""
        now = utcnow()
        held = self._release_if_changed(self.store.get_state("held"), now)
        self.store.requeue_expired(now, self.settings.max_attempts)
        reason, held = self._reason(held, now)
        if not self.store.has_due(now):
            return self.counts
        with SessionPool(self.snapshot, self.settings.sessions) as pool:
            self._batches(pool, limit, reason)
            self.counts["connections"] = pool.connections
        if pool.config_error is not None or (reason and held is None):
            self._remember_hold(held, reason or pool.config_error.error,
                                pool.config_error)
        elif held is not None and pool.connections and pool.unavailable is None:
            # The probe reached the server: whatever the reply to the message,
            # the outage that held the mail is over.
            released = self.store.release_held(now=utcnow())
            self.counts["released"] += released
            logger.info("mail is going out again: %d held message(s) released",
                        released)
        return self.counts

    def _release_if_changed(self, held, now):
        """The hold in force: none once the admin changed the settings (the
        mail it held is queued again, to go out with the new ones)."""
        if held is None or held["fp"] == self.fp:
            return held
        released = self.store.release_held(keep_fp=self.fp, now=now)
        logger.info("mail settings changed: %d held message(s) released", released)
        self.counts["released"] += released
        return None

    def _reason(self, held, now):
        """(why this pass cannot send, or None; the hold still in force).

        Under a hold, mail is held without a connection until the probe is
        due; then one worker wins the probe turn and queues one held message.
        """
        reason = self.snapshot.blocking_problem()
        if reason is not None or held is None:
            return reason, held
        if now < _time(held["probe_after"]) or not self._claim_probe(held, now):
            return held["reason"], held  # not yet, or another worker probes
        if self.store.release_one_held(self.fp, now) is None:
            return None, None  # nothing is held now
        return None, held

    def _batches(self, pool, limit, reason):
        """Claim and send (or, with a ``reason``, hold) batch after batch."""
        rate = parse_rate(self.settings.rate_limit)
        done = 0
        while limit is None or done < limit:
            size = self.settings.batch_size if limit is None else \
                min(self.settings.batch_size, limit - done)
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
                why = reason or pool.config_error.error
                outcomes = [(row, Outcome(Kind.CONFIG, None, why)) for row in rows]
            self._record(owner, outcomes)

    # ------------------------------------------------------------ sending
    def _claim_probe(self, held, now):
        """Take the probe turn (one worker wins) and push the next one out."""
        later = dict(held, probe_after=str(now + datetime.timedelta(
            seconds=self.settings.probe_interval)))
        return self.store.take_probe(held, later, now)

    def _send(self, pool, rows, owner):
        """Send claimed rows; return [(row, Outcome)] not recorded yet.

        Outcomes are recorded as the batch goes: whenever the pool takes the
        next message and RECORD_EVERY seconds have passed since the last
        write, the finished ones are written. So a worker that dies leaves
        unrecorded the mail finished since then and the mail still on the
        wire (one slow message can stretch that beyond RECORD_EVERY): the
        only mail another worker may send again.
        """
        results = []
        self._recorded_at = time.monotonic()
        pool.deliver(self._jobs(rows, results, owner))
        return _finished(results, everything=True)

    def _jobs(self, rows, results, owner):
        """Yield a Job per sendable row (lazily, so attachments load one at a
        time) and append (row, Job or Outcome) to ``results``."""
        now = utcnow()
        contacts = self._contacts([r.pe_id for r in rows if r.pe_id and not r.address])
        for row in rows:
            if time.monotonic() - self._recorded_at >= RECORD_EVERY:
                finished = _finished(results)
                if finished:
                    self._record(owner, finished)
                self._recorded_at = time.monotonic()
            job = self._job(row, contacts, now)
            results.append((row, job))
            if isinstance(job, Job):
                yield job

    def _job(self, row, contacts, now):
        """The Job for ``row``, or the Outcome that ends it unsent: expired,
        unreadable, or a pe_id without a usable address."""
        if row.expires_on and row.expires_on < now:
            return Outcome(Kind.PERMANENT, None, "expired unsent at %s" % row.expires_on)
        try:
            msg = self.store.message(row)
            if not msg.recipients() and row.pe_id:
                msg = dataclasses.replace(msg, to=(_contact(row.pe_id, contacts),))
        except NoAddress as e:
            return Outcome(Kind.PERMANENT, None, str(e))
        except Exception as e:
            return _unreadable(e)
        sender = row.sender or self.snapshot.sender
        return Job(row.id, mime.bare(sender), msg.recipients(),
                   self._builder(row, msg, sender))

    def _builder(self, row, msg, sender):
        """A function that makes the wire bytes; attachments load lazily here."""
        store, dkim = self.store, self.snapshot.dkim
        if row.attachment_count:
            msg = dataclasses.replace(msg, attachments=store.attachments(row.id))
        date = row.created_on.replace(tzinfo=datetime.timezone.utc)

        def build():
            return mime.wire(mime.build(msg, sender, row.message_id, date, dkim))
        return build

    def _contacts(self, pe_ids):
        """{pe_id: address} from Sahana's pr_contact, first by priority."""
        db = self.store.db
        if not pe_ids or "pr_contact" not in db.tables:
            return {}
        c = db.pr_contact
        query = (c.pe_id.belongs(set(pe_ids))) & (c.contact_method == "EMAIL")
        if "deleted" in c.fields:
            query &= (c.deleted == False)  # noqa: E712
        found = {}
        order = c.priority | c.id if "priority" in c.fields else c.id
        for r in db(query).select(c.pe_id, c.value, orderby=order):
            found.setdefault(r.pe_id, r.value)
        return found

    # ---------------------------------------------------------- recording
    def _record(self, owner, outcomes):
        """Write the decision for each (row, Outcome); count and log it."""
        now = utcnow()
        results = []
        for row, out in outcomes:
            decision = decide(row, out, self.settings, now, self.fp)
            self.counts[decision.logged] += 1
            if out.refused:
                self.counts["refused"] += len(out.refused)
            if decision.logged == Logged.FAILED:
                logger.warning("message %s to %s failed: %s", row.message_id,
                               row.address or "pe_id %s" % row.pe_id,
                               decision.attempt["error"])
            results.append((row.id, decision.changes, decision.attempt))
        self.store.record(owner, now, self.worker, results)

    def _remember_hold(self, held, reason, config_error):
        """Record why mail is held; log it once per new reason or settings."""
        now = utcnow()
        wait = self.settings.probe_interval if config_error is not None else None
        state = dict(fp=self.fp, reason=reason, probe_after=str(
            now + datetime.timedelta(seconds=wait) if wait else
            datetime.datetime(9999, 12, 31)))
        if held is None or held.get("reason") != reason:
            logger.error("outgoing mail is held: %s", reason)
        self.store.hold(state, now)
