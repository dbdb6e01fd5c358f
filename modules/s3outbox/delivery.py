# -*- coding: utf-8 -*-
"""One delivery pass: claim due mail in batches, send it over a pool of SMTP
sessions, and record what happened to every message.

The one rule: a message fails only for reasons about itself (a 5xx for its
recipients or data, too big, expired, or its own 4xx replies past
max_attempts/max_age). Anything about the settings or the server (unreachable,
connect timeout, refused, DNS, TLS, authentication, 421) holds the mail with
the reason, never charging its attempts or its age.

Holds are per settings fingerprint and host (state row ``held:<fp>:<host>``:
reason and ``probe_after``); ``reached:<fp>:<host>`` says when those settings
last reached the server from that host. While held, new mail is held too
without touching the network; after ``probe_after`` one worker probes the
server without a message. Only a worker whose own settings reached the server
releases held mail, and a worker whose settings fail claims nothing while
another host's settings work, so hosts with different settings do not flip
mail between held and queued.
"""

import datetime
import hashlib
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
    SessionPool, SmtpSession

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
        # Holds and reaches are per settings and host (the worker name before
        # '#'): the same settings may reach the server from one host only.
        host = self.worker.partition("#")[0].encode("utf-8")
        self.host = hashlib.sha256(host).hexdigest()[:8]
        self.key = "%s:%s" % (self.fp, self.host)
        self._resolved = {}  # {row id: address found for its pe_id}
        self.counts = dict(sent=0, retry=0, failed=0, held=0, refused=0,
                           released=0, connections=0)

    def run(self, limit=None):
        counts = self._run(limit)
        # End the last read transaction too: on MariaDB (REPEATABLE READ) an
        # open one would hide mail queued later from this worker's next pass.
        self.store.db.commit()
        return counts

    def _run(self, limit):
        """Decide whether this worker can send (``_reason``), then claim and
        send batch after batch, or hold what it claims, with the reason."""
        store, now = self.store, utcnow()
        store.requeue_expired(now, self.settings.max_attempts)
        due, held_mail = store.pending(now)
        if not (due or held_mail):
            return self.counts
        reason = self._reason(now, held_mail)
        due = due or self.counts["released"] > 0
        if not due or (reason is not None and self._others_work(now)):
            return self.counts  # a worker whose settings fail leaves mail to others

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
                if pool.config_error is not None and self._others_work(utcnow()):
                    break
            self.counts["connections"] += pool.connections
            if pool.config_error is not None:
                self._hold(pool.config_error.error, probe=True)
            elif pool.reached:
                self._reached(utcnow())
        if reason is not None and self.counts["held"]:
            self._hold(reason, probe=self.snapshot.blocking_problem() is None)
        return self.counts

    # ----------------------------------------------------- hold and release
    def _reason(self, now, held_mail):
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
            return reason
        held, self._seen = self.store.hosts()
        mine = held.get(self.key)
        if mine is not None:
            if now < _time(mine["probe_after"]) or not self._claim_probe(mine, now):
                return mine["reason"]
            return self._probe(now, held_mail)
        last = self._seen.get(self.key)
        if (last is None or self._stale(last, now)) and \
                (held_mail or self._others_work(now)):
            return self._probe(now, held_mail)
        if held_mail:
            self._release(now)
        return None

    def _probe(self, now, held_mail):
        """Try the server without a message; on success release held mail."""
        session = SmtpSession(self.snapshot)
        failed = session.probe(mime.bare(self.snapshot.sender or ""))
        self.counts["connections"] += session.opened
        if failed is not None:
            self._hold(failed.error, probe=True)
            return failed.error
        self.store.set_state("held:" + self.key, None, now=now)
        self._reached(now)
        if held_mail:
            self._release(now)
        return None

    def _release(self, now):
        released = self.store.release_held(now=now)
        self.store.db.commit()
        if released:
            logger.info("mail is going out again: %d held message(s) released",
                        released)
        self.counts["released"] += released

    def _reached(self, now):
        """Note that these settings reached the server; written at most every
        tenth of ``probe_interval``, not on every pass of a busy worker."""
        last = getattr(self, "_seen", {}).get(self.key)
        if last is None or (now - last).total_seconds() >= \
                self.settings.probe_interval / 10.0:
            self.store.mark_reached(self.key, now)
        self.store.db.commit()

    def _stale(self, when, now):
        return (now - when).total_seconds() > self.settings.probe_interval

    def _others_work(self, now):
        """Whether another host's settings reached the server within
        ``probe_interval`` (this host's earlier settings do not count: the
        admin changed them)."""
        if not hasattr(self, "_seen"):
            self._seen = self.store.hosts()[1]
        return any(not key.endswith(":" + self.host) and not self._stale(when, now)
                   for key, when in self._seen.items())

    def _claim_probe(self, held, now):
        """Take the probe turn (one worker wins) and push the next one out."""
        later = dict(held, probe_after=str(now + datetime.timedelta(
            seconds=self.settings.probe_interval)))
        won = self.store.set_state("held:" + self.key, later, expect=held, now=now)
        self.store.db.commit()
        return won

    def _hold(self, reason, probe):
        """Record why these settings cannot deliver; logged once per reason.
        ``probe``: try again after probe_interval (an outage may end); without
        it only a change of the settings helps."""
        now, key = utcnow(), "held:" + self.key
        old = self.store.get_state(key)
        after = now + datetime.timedelta(seconds=self.settings.probe_interval) \
            if probe else datetime.datetime(9999, 12, 31)
        if old is None or old.get("reason") != reason:
            logger.error("outgoing mail is held: %s", reason)
        elif probe and now < _time(old["probe_after"]):
            after = _time(old["probe_after"])  # the probe turn already set stands
        self.store.set_state(key, dict(fp=self.fp, reason=reason,
                                       probe_after=str(after)), now=now)
        self.store.db.commit()

    # ------------------------------------------------------------ sending
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
                    self._resolved[row.id] = mime.bare(address)[:255]
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
            address = self._resolved.pop(row.id, None)  # a pe_id's, see _jobs
            if out.kind == OK and not out.refused and not address:
                self.counts["sent"] += 1
                results.append((row.id, SENT_PLAIN, dict(tried, outcome=SENT)))
            elif out.kind == OK:
                self.counts["sent"] += 1
                self.counts["refused"] += len(out.refused or ())
                results.append((row.id, dict(
                    status=SENT, sent_on=now, attempts=row.attempts + 1,
                    last_code=out.code, last_error=out.error,
                    refused=mime.dumps(out.refused) if out.refused else None),
                    dict(tried, outcome=SENT)))
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
            if address:  # the row records where the mail went
                results[-1][1]["address"] = address
        self.store.record(owner, now, self.worker, results)

    def _give_up(self, row, now):
        """Past max_attempts, or max_age not counting time spent held."""
        s = self.settings
        if row.attempts + 1 >= s.max_attempts:
            return True
        age = (now - row.created_on).total_seconds()
        return age >= s.max_age and \
            age - self.store.held_seconds(row.id, now) >= s.max_age
