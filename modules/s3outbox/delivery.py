# -*- coding: utf-8 -*-
"""One delivery pass: claim due mail in batches, send it over a pool of SMTP
sessions, and record what happened to every message.

Held mail (a configuration error) is tracked in the state row ``held``:
``{"fp": settings fingerprint, "reason": text, "probe_after": time}``.
While it is set and the settings are unchanged, new mail is held too without
touching the network; once ``probe_after`` passes, one held message is tried
again (an outage may be over). A changed fingerprint or any success releases
everything held.
"""

import datetime
import logging
import os
import random
import socket
import time
import uuid

from . import message as mime
from .settings import Snapshot
from .store import FAILED, HELD, QUEUED, SENT, SENT_PLAIN, utcnow
from .transport import CONFIG, PERMANENT, SENT as OK, TRANSIENT, Job, Outcome, \
    SessionPool

logger = logging.getLogger("s3outbox")

# Seconds between writes of results during a batch (see Pass._send).
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


def backoff(settings, attempts):
    """Seconds to wait after the ``attempts``-th transient failure, jittered."""
    delay = min(settings.retry_max, settings.retry_base * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.75, 1.25)


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
        counts = self._run(limit)
        # End the last read transaction too: on MariaDB (REPEATABLE READ) an
        # open one would hide mail queued later from this worker's next pass.
        self.store.db.commit()
        return counts

    def _run(self, limit):
        store, now = self.store, utcnow()
        held = store.get_state("held")
        if held is not None and held["fp"] != self.fp:
            # The admin changed the settings: held mail gets its chance now.
            released = store.release_held(keep_fp=self.fp, now=now)
            store.set_state("held", None, now=now)
            store.db.commit()
            logger.info("mail settings changed: %d held message(s) released", released)
            self.counts["released"] += released
            held = None
        store.requeue_expired(now, self.settings.max_attempts)

        reason = self.snapshot.blocking_problem()
        if reason is None and held is not None:
            if now < _time(held["probe_after"]):
                reason = held["reason"]
            elif self._claim_probe(held, now):
                if store.release_one_held(self.fp, now) is None:
                    store.set_state("held", None, now=now)  # nothing is held now
                    held = None
                store.db.commit()
            else:
                reason = held["reason"]  # another worker is probing
        if not store.has_due(now):
            return self.counts

        rate = parse_rate(self.settings.rate_limit)
        with SessionPool(self.snapshot, self.settings.sessions) as pool:
            done = 0
            while limit is None or done < limit:
                size = self.settings.batch_size if limit is None else \
                    min(self.settings.batch_size, limit - done)
                owner = "%s/%s" % (self.worker, uuid.uuid4().hex[:12])
                if done:  # a long pass takes back the rows of workers that died
                    store.requeue_expired(utcnow(), self.settings.max_attempts)
                rows = store.claim(owner, size, self.settings.lease, utcnow(), rate)
                if not rows:
                    break
                done += len(rows)
                if reason is None and pool.config_error is None:
                    outcomes = self._send(pool, rows, owner)
                else:
                    why = reason or pool.config_error.error
                    outcomes = [(row, Outcome(CONFIG, None, why)) for row in rows]
                self._record(owner, outcomes)
            self.counts["connections"] = pool.connections
            config_error = pool.config_error
            # The probe reached the server: whatever the reply to the message,
            # the outage that held the mail is over.
            reached = pool.connections and config_error is None and \
                pool.unavailable is None

        if config_error is not None or (reason and held is None):
            self._remember_hold(held, reason or config_error.error, config_error)
        elif held is not None and reached:
            released = store.release_held(now=utcnow())
            store.set_state("held", None)
            store.db.commit()
            self.counts["released"] += released
            logger.info("mail is going out again: %d held message(s) released",
                        released)
        return self.counts

    # ------------------------------------------------------------ sending
    def _claim_probe(self, held, now):
        """Take the probe turn (one worker wins) and push the next one out."""
        later = dict(held, probe_after=str(now + datetime.timedelta(
            seconds=self.settings.probe_interval)))
        won = self.store.set_state("held", later, expect=held, now=now)
        self.store.db.commit()
        return won

    def _send(self, pool, rows, owner):
        """Send claimed rows; return [(row, Outcome)] not recorded yet.

        Outcomes are recorded as the batch goes, at least every RECORD_EVERY
        seconds: a worker that dies leaves at most that much sent mail
        unrecorded, the only mail another worker may send again.
        """
        results = []
        self._recorded_at = time.monotonic()
        pool.deliver(self._jobs(rows, results, owner))
        return _finished(results, everything=True)

    def _jobs(self, rows, results, owner):
        """Yield a Job per sendable row (lazily, so attachments load one at a
        time) and append (row, Job or Outcome) to ``results``."""
        now = utcnow()
        contacts = self._contacts([r.pe_id for r in rows if r.pe_id])
        for row in rows:
            if time.monotonic() - self._recorded_at >= RECORD_EVERY:
                finished = _finished(results)
                if finished:
                    self._record(owner, finished)
                self._recorded_at = time.monotonic()
            if row.expires_on and row.expires_on < now:
                results.append((row, Outcome(PERMANENT, None, "expired unsent at %s"
                                             % row.expires_on)))
                continue
            try:
                msg = self.store.content(row)
                recipients = [mime.bare(a) for a in msg["to"] + msg["cc"] + msg["bcc"]]
                if not recipients and row.pe_id:
                    address = contacts.get(row.pe_id)
                    if not address:
                        raise LookupError("no e-mail address for person entity %s"
                                          % row.pe_id)
                    if not mime.ADDRESS_RE.match(mime.bare(address)):
                        raise LookupError("the e-mail contact %r of person entity %s "
                                          "is not an address" % (address, row.pe_id))
                    msg["to"], recipients = [address], [mime.bare(address)]
                    self._note_address(row, recipients[0])
            except Exception as e:
                why = str(e) if type(e) is LookupError else \
                    "cannot read the stored message: %s: %s" % (type(e).__name__, e)
                results.append((row, Outcome(PERMANENT, None, why)))
                continue
            sender = row.sender or self.snapshot.sender
            job = Job(row.id, mime.bare(sender), recipients,
                      self._builder(row, msg, sender))
            results.append((row, job))
            yield job

    def _builder(self, row, msg, sender):
        """A function that makes the wire bytes; attachments load lazily here."""
        store, dkim = self.store, self.snapshot.dkim
        attachments = store.attachments(row.id) if row.attachment_count else ()
        date = row.created_on.replace(tzinfo=datetime.timezone.utc)

        def build():
            return mime.wire(mime.build(msg, sender, row.message_id, date, attachments,
                                        dkim))
        return build

    def _note_address(self, row, address):
        """Record on a pe_id row the address it goes to (it commits with
        the row's outcome), so the admin sees where it went."""
        if row.address != address:
            o = self.store.outbox
            self.store.db(o.id == row.id).update(address=address[:255])

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
        now, s = utcnow(), self.settings
        results = []
        for row, out in outcomes:
            tried = dict(outcome=out.kind, code=out.code, error=out.error)
            if out.kind == OK and not out.refused:
                self.counts["sent"] += 1
                results.append((row.id, SENT_PLAIN, dict(tried, outcome=SENT)))
            elif out.kind == OK:
                self.counts["sent"] += 1
                self.counts["refused"] += len(out.refused)
                results.append((row.id, dict(
                    status=SENT, sent_on=now, attempts=row.attempts + 1,
                    last_code=out.code, last_error=out.error,
                    refused=mime.dumps(out.refused)), dict(tried, outcome=SENT)))
            elif out.kind == CONFIG:
                self.counts["held"] += 1
                results.append((row.id, dict(
                    status=HELD, held_fp=self.fp, last_error=out.error,
                    last_code=out.code), dict(tried, outcome=HELD)))
            elif out.kind == TRANSIENT and not self._give_up(row, now):
                self.counts["retry"] += 1
                attempts = row.attempts + 1
                results.append((row.id, dict(
                    status=QUEUED, attempts=attempts, last_error=out.error,
                    last_code=out.code, next_attempt_on=now + datetime.timedelta(
                        seconds=backoff(s, attempts))), dict(tried, outcome="retry")))
            else:
                self.counts["failed"] += 1
                error = out.error
                if out.kind == TRANSIENT:
                    error = "gave up after %d attempts: %s" % (row.attempts + 1, error)
                logger.warning("message %s to %s failed: %s", row.message_id,
                               row.address or "pe_id %s" % row.pe_id, error)
                results.append((row.id, dict(
                    status=FAILED, attempts=row.attempts + 1, last_error=error,
                    last_code=out.code), dict(tried, outcome=FAILED, error=error)))
        self.store.record(owner, now, self.worker, results)

    def _give_up(self, row, now):
        s = self.settings
        return (row.attempts + 1 >= s.max_attempts or
                (now - row.created_on).total_seconds() >= s.max_age)

    def _remember_hold(self, held, reason, config_error):
        """Record why mail is held; log it once per new reason or settings."""
        now = utcnow()
        wait = self.settings.probe_interval if config_error is not None else None
        state = dict(fp=self.fp, reason=reason, probe_after=str(
            now + datetime.timedelta(seconds=wait) if wait else
            datetime.datetime(9999, 12, 31)))
        if held is None or held.get("reason") != reason:
            logger.error("outgoing mail is held: %s", reason)
        self.store.set_state("held", state, now=now)
        self.store.db.commit()
