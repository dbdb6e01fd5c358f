# -*- coding: utf-8 -*-
"""SMTP transport: open a session, send many messages over it, close it, and
say what every outcome means.

Outcome kinds, decided from the SMTP reply code wherever there is one:

- ``sent``: accepted for at least one recipient (refused ones are listed);
- ``config``: nothing about the message: the settings or the server stop
  every message (no server, DNS, refused or timed-out connection, TLS,
  authentication, a 421 "service not available" at any stage, our sender
  refused). The mail is held, probed, and never charged an attempt;
- ``transient``: a temporary refusal of this message (another 4xx, a timeout
  or dropped connection while it was on the wire): retried with backoff;
- ``permanent``: the server refused this message for good (5xx, too big).

The one rule: a message fails only for reasons about itself.
"""

import queue
import smtplib
import socket
import ssl
import threading
import time

from .message import bare

SENT, CONFIG, TRANSIENT, PERMANENT = "sent", "config", "transient", "permanent"


class Outcome(object):
    """``reply``: the server's whole final reply to an accepted message."""
    __slots__ = ("kind", "code", "error", "refused", "reply")

    def __init__(self, kind, code=None, error=None, refused=None, reply=None):
        self.kind, self.code, self.error, self.refused = kind, code, error, refused
        self.reply = reply

    def __repr__(self):
        return "Outcome(%s, %s, %r)" % (self.kind, self.code, self.error)


def _reply(code, text):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "%s %s" % (code, text) if code else str(text)


def classify(exc, stage):
    """The Outcome for an exception raised at ``stage`` ('connect' or 'send').

    Whatever stops a session from opening (greeting, EHLO, STARTTLS, login)
    is about the server or the settings, never about a message: CONFIG.
    """
    outcome = _classify(exc)
    if stage == "connect" and outcome.kind != CONFIG:
        return Outcome(CONFIG, outcome.code, "cannot open an SMTP session: %s"
                       % outcome.error)
    return outcome


def _unavailable(code, text):
    return Outcome(CONFIG, code, "the server is not available: " + text)


def _classify(exc):
    """The Outcome of an exception while a message is on the wire."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [c for c, _ in exc.recipients.values()]
        text = "; ".join("%s: %s" % (rcpt, _reply(c, m))
                         for rcpt, (c, m) in exc.recipients.items())
        if codes and all(c == 421 for c in codes):
            return _unavailable(421, text)
        kind = PERMANENT if codes and all(c >= 500 for c in codes) else TRANSIENT
        return Outcome(kind, max(codes) if codes else None,
                       "all recipients refused: " + text)
    if isinstance(exc, smtplib.SMTPSenderRefused):
        text = _reply(exc.smtp_code, exc.smtp_error)
        if exc.smtp_code == 421:
            return _unavailable(421, text)
        if 400 <= exc.smtp_code < 500:
            return Outcome(TRANSIENT, exc.smtp_code, "sender deferred: " + text)
        if exc.smtp_code == 552:  # message too big for this server
            return Outcome(PERMANENT, 552, text)
        return Outcome(CONFIG, exc.smtp_code, "sender %s refused: %s" % (
            exc.sender, text))
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return Outcome(CONFIG, exc.smtp_code, "authentication refused: " +
                       _reply(exc.smtp_code, exc.smtp_error))
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return Outcome(CONFIG, None, "the server does not support this: %s "
                       "(check tls, ssl and login)" % exc)
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        text = _reply(code, exc.smtp_error)
        if code == 421:  # "service not available, closing channel"
            return _unavailable(code, text)
        if 400 <= code < 500 or code == -1:
            return Outcome(TRANSIENT, code, text)
        return Outcome(PERMANENT, code, text)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return Outcome(TRANSIENT, None, "connection dropped: %s" % (exc or "no reply"))
    if isinstance(exc, ssl.SSLError):
        return Outcome(CONFIG, None, "TLS failed: %s (check tls and ssl)" % exc)
    if isinstance(exc, socket.gaierror):
        return Outcome(CONFIG, None, "server name does not resolve: %s" % exc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return Outcome(TRANSIENT, None, "timed out: %s" % (exc or "no reply"))
    if isinstance(exc, ConnectionRefusedError):
        return Outcome(CONFIG, None, "connection refused: %s" % exc)
    if isinstance(exc, (ConnectionError, EOFError)):
        return Outcome(TRANSIENT, None, "connection dropped: %s" % exc)
    if isinstance(exc, OSError):
        return Outcome(TRANSIENT, None, "network error: %s" % exc)
    if isinstance(exc, smtplib.SMTPException):
        return Outcome(TRANSIENT, None, "SMTP error: %s" % exc)
    return Outcome(PERMANENT, None, "%s: %s" % (type(exc).__name__, exc))


class _KeepsReply(object):
    """smtplib's sendmail() drops the reply to the message; keep it."""
    reply = None

    def data(self, msg):
        self.reply = super(_KeepsReply, self).data(msg)
        return self.reply


class _SMTP(_KeepsReply, smtplib.SMTP):
    pass


class _SMTP_SSL(_KeepsReply, smtplib.SMTP_SSL):
    pass


class SmtpSession(object):
    """One SMTP connection: open(), send() as often as needed, close()."""

    def __init__(self, snapshot):
        self.snapshot = snapshot
        self.connection = None
        self.opened = 0  # connections made, for figures and tests

    def open(self):
        """Connect, STARTTLS and log in; return None or the failing Outcome."""
        s = self.snapshot
        problem = s.blocking_problem()
        if problem:
            return Outcome(CONFIG, None, problem)
        host, port = s.host_port
        try:
            if s.ssl:
                conn = _SMTP_SSL(host, port, local_hostname=s.hostname,
                                        timeout=s.timeout, context=self._context())
            else:
                conn = _SMTP(host, port, local_hostname=s.hostname,
                                    timeout=s.timeout)
            self.opened += 1
            self.connection = conn
            conn.ehlo()
            if s.tls and not s.ssl:
                if not conn.has_extn("starttls"):
                    self.close()
                    return Outcome(CONFIG, None, "tls is on but %s does not offer "
                                   "STARTTLS (set tls = false, or use port 465 with "
                                   "ssl = true)" % s.server)
                conn.starttls(context=self._context())
                conn.ehlo()
            if s.login:
                user, _, password = s.login.partition(":")
                conn.login(user, password)
        except Exception as e:
            self.close()
            return classify(e, "connect")
        return None

    def probe(self, sender):
        """Open a session and ask whether ``sender`` may send (MAIL FROM, then
        RSET), touching no message; return None or the failing Outcome. This
        is how held mail learns that the server answers again."""
        failed = self.open()
        if failed is not None:
            return failed
        try:
            code, text = self.connection.mail(sender)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, text, sender)
            self.connection.rset()
        except Exception as e:
            outcome = _classify(e)
            if outcome.kind != CONFIG:  # a 4xx to our sender: not answering yet
                outcome = Outcome(CONFIG, outcome.code, "the server does not take "
                                  "mail now: %s" % outcome.error)
            return outcome
        finally:
            self.close()
        return None

    def _context(self):
        """The settings' ssl_context; else, as web2py's Mail, one that
        verifies the certificate unless self_signed_certificate is set."""
        s = self.snapshot
        if s.ssl_context is not None:
            return s.ssl_context
        context = ssl.create_default_context()
        if s.self_signed_certificate:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def send(self, sender, recipients, data):
        """Send one message over the open connection; never raises."""
        try:
            refused = self.connection.sendmail(sender, recipients, data)
        except Exception as e:
            outcome = classify(e, "send")
            if outcome.kind != TRANSIENT or self._alive():
                self._reset()
            else:
                self.close()
            return outcome
        code, text = self.connection.reply or (250, b"")
        reply = _reply(code, text)
        if refused:
            text = "; ".join("%s: %s" % (r, _reply(c, m)) for r, (c, m) in refused.items())
            return Outcome(SENT, code, "refused some recipients: " + text,
                           refused={r: _reply(c, m) for r, (c, m) in refused.items()},
                           reply=reply)
        return Outcome(SENT, code, reply=reply)

    def _alive(self):
        try:
            return self.connection is not None and self.connection.noop()[0] == 250
        except Exception:
            return False

    def _reset(self):
        try:
            self.connection.rset()
        except Exception:
            self.close()

    def close(self):
        conn, self.connection = self.connection, None
        if conn is None:
            return
        try:
            conn.quit()
        except Exception:
            try:
                conn.close()
            except Exception:
                pass


class Job(object):
    """One message to send: envelope, a builder for its bytes, and the result.

    ``done`` turns True once ``outcome`` is final (a retry on a new connection
    may replace an earlier outcome), so another thread may record it then.
    """
    __slots__ = ("key", "sender", "recipients", "build", "outcome", "done")

    def __init__(self, key, sender, recipients, build):
        self.key, self.sender, self.recipients, self.build = key, sender, recipients, build
        self.outcome = None
        self.done = False


# Jobs in a row slower than the pool's patience before it turns to threads.
SLOW_JOBS = 3


class SessionPool(object):
    """Up to ``size`` SMTP sessions, kept open for a whole delivery pass.

    ``deliver(jobs)`` sends every job and fills in ``job.outcome``. After an
    outcome that is not about a message (``config_error``: the settings, or
    a server that cannot be reached or takes no session now) no further
    connection is tried in this pool: the remaining jobs get that outcome,
    so a broken setup or a dead server costs one connection, not one per
    message. ``reached`` says a session opened (our settings work there).
    With size 1 everything runs in the calling thread.
    """

    def __init__(self, snapshot, size=1):
        self.snapshot = snapshot
        self.size = max(1, int(size or 1))
        self.sessions = []
        self.sender = bare(snapshot.sender or "")
        self.config_error = None
        self.reached = False
        self.orphans = []  # jobs left by sessions the server would not take
        self.patience = 0.01  # seconds a full queue may wait before a new session
        self.threaded = False  # True once jobs were slow: sessions run in threads
        self._slow = 0         # consecutive jobs that took longer than patience
        self._lock = threading.Lock()

    @property
    def connections(self):
        return sum(s.opened for s in self.sessions)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for session in self.sessions:
            session.close()

    def _run(self, session, job, alone=True):
        """Send ``job`` on ``session``, opening or re-opening it once.

        Not ``alone``, returns False when the session cannot open while others
        are connected (the server caps sessions per client): the job is left
        for them and this session should retire.
        """
        stop = self.config_error
        if stop is not None:
            job.outcome = stop
            return
        try:
            data, job.build = job.build(), None  # drop attachments once built
        except Exception as e:
            job.outcome = Outcome(PERMANENT, None, "cannot build the message: %s: %s"
                                  % (type(e).__name__, e))
            return
        for _ in range(2):
            if session.connection is None:
                failed = session.open()
                if failed is not None:
                    if not alone and self._others_connected(session):
                        job.build = lambda: data
                        return False
                    self._stop(failed)
                    job.outcome = failed
                    return True
                self.reached = True
            job.outcome = session.send(job.sender, job.recipients, data)
            if job.outcome.kind == CONFIG:
                if job.sender != self.sender and (job.outcome.code or 0) >= 500:
                    # The server refused this message's own sender, not ours.
                    job.outcome = Outcome(PERMANENT, job.outcome.code,
                                          job.outcome.error + " (the sender given "
                                          "to send() for this message)")
                else:
                    self._stop(job.outcome)
            # A connection that died under this job is re-opened once for it;
            # dropped again, the job is retried later (a server that is gone
            # shows when the next job cannot connect).
            if job.outcome.kind != TRANSIENT or session.connection is not None:
                return True
        return True

    def _others_connected(self, session):
        return any(s.connection is not None for s in self.sessions if s is not session)

    def _stop(self, outcome):
        """No more connections in this pool after ``outcome`` (not about a message)."""
        with self._lock:
            self.config_error = self.config_error or outcome

    def deliver(self, jobs):
        """Send ``jobs`` (an iterable, consumed lazily) over the pool.

        Jobs go over one session in the calling thread while they take less
        than ``patience``: a near, fast server is best served so, as threads
        would only add handoffs of the GIL. Once ``SLOW_JOBS`` jobs in a row
        take longer (a far relay), the rest of this pool's jobs are spread over
        threads. Only a run of slow jobs counts: on a busy host a single job
        can wait tens of milliseconds for a CPU, and threads would then only
        add contention for good.
        """
        jobs = iter(jobs)
        if not self.sessions:
            self.sessions.append(SmtpSession(self.snapshot))
        if not self.threaded:
            for job in jobs:
                started = time.monotonic()
                try:
                    self._run(self.sessions[0], job)
                except Exception as e:  # never lose a job to a bug
                    job.outcome = Outcome(TRANSIENT, None, "internal error: %s" % e)
                job.done = True
                slow = time.monotonic() - started > self.patience
                self._slow = self._slow + 1 if slow else 0
                if self.size > 1 and self._slow >= SLOW_JOBS:
                    self.threaded = True
                    break
            else:
                return
        work = queue.Queue(maxsize=self.size * 2)  # bounds messages in memory
        threads = []

        def worker(session):
            while True:
                job = work.get()
                if job is None:
                    return
                try:
                    if not self._run(session, job, alone=False):
                        with self._lock:
                            self.orphans.append(job)
                            self.size = len(threads)  # as many as the server takes
                        return
                except Exception as e:  # never lose a job to a bug
                    job.outcome = Outcome(TRANSIENT, None, "internal error: %s" % e)
                job.done = True

        def add_session():
            if len(threads) == len(self.sessions):
                self.sessions.append(SmtpSession(self.snapshot))
            thread = threading.Thread(target=worker, args=(self.sessions[len(threads)],),
                                      daemon=True)
            threads.append(thread)
            thread.start()

        # Sessions opened by earlier batches of this pool go back to work at once.
        for _ in range(min(len(self.sessions), self.size)):
            add_session()
        try:
            for job in jobs:
                # Another session opens only while the open ones fall behind:
                # a fast local server keeps one, a slow relay gets up to size.
                while True:
                    try:
                        work.put(job, timeout=self.patience)
                        break
                    except queue.Full:
                        if len(threads) < self.size:
                            add_session()
        finally:
            for _ in threads:
                work.put(None)  # retired sessions leave theirs unread
            for t in threads:
                t.join()
        for job in self.orphans:
            live = [s for s in self.sessions if s.connection is not None]
            self._run((live or self.sessions)[0], job)
            job.done = True
        self.orphans = []
