"""MailS3: web2py's Mail, except that send() queues and nothing raises.

- ``send()`` checks its arguments and writes the message to the outbox in the
  caller's transaction. It returns True, or False with ``mail.error`` (a str).
- ``send_direct_email()`` sends now over SMTP, as Mail.send should have.
- ``process_outbox()`` runs one delivery pass (see delivery.py); ``work()``
  repeats passes for a while, for a scheduler task.
"""

import contextlib
import datetime
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import Any

from gluon.tools import Mail

from .bounces import reader as bounces
from .delivery import message as mime
from .delivery.dialects import open_store
from .delivery.engine import Pass
from .delivery.message import Addresses, Attachments, Body, DkimKey, Message
from .delivery.schedule import restore, taken_signals
from .delivery.settings import DEFAULTS, Snapshot, read_value
from .delivery.store import DAL, PAUSE, utcnow
from .delivery.wire import message_bytes
from .transport.base import Kind, Outcome

logger = logging.getLogger("s3outbox")


# send()'s pe_id: a person entity, or a list of them (one message each).
PeIds = int | list[int] | tuple[int, ...] | None
# A pass's counts (sent, retry, ...), with ``error`` (a str) when it failed.
Counts = dict[str, int | str]


def _pe_ids(pe_id: PeIds, addressed: object) -> list[int | None]:
    """send()'s ``pe_id`` as a list: a list of person entities gets one
    message each, and no address beside them; raises InvalidMessage."""
    if not isinstance(pe_id, (list, tuple)):
        return [pe_id]
    if addressed:
        raise mime.InvalidMessage("a list of pe_ids is sent without to, cc or bcc")
    if not pe_id:
        raise mime.InvalidMessage("pe_id is an empty list")
    for each in pe_id:
        if isinstance(each, bool) or not isinstance(each, int):
            raise mime.InvalidMessage("pe_id must be an integer, not %r" % (each,))
    return list(pe_id)


class MailS3(Mail):
    """A drop-in ``gluon.tools.Mail`` backed by a database outbox.

    ``tablename`` names the outbox table (and prefixes its companions), so the
    module can live beside Sahana Eden's own ``msg_outbox``.
    """

    # What the last send() or send_direct_email() did (Mail's own attributes).
    error: str | None
    result: dict[str, Any]  # send(): id, message_id (ids); direct: refused recipients
    reply: str | None

    def __init__(
        self,
        db: DAL,
        server: str | None = None,
        sender: str | None = None,
        login: str | None = None,
        tls: bool = True,
        tablename: str = "msg_outbox",
        migrate: bool = True,
    ) -> None:
        Mail.__init__(self, server, sender, login, tls)
        settings = self.settings
        settings.lock_keys = False
        for key, value in DEFAULTS.items():
            settings[key] = value
        settings.lock_keys = True
        self.db = db
        self._pass_error: str | None = None  # the last failure of a whole pass, logged once
        self.store = open_store(db, tablename, migrate)

    # ------------------------------------------------------------------ queue
    def send(
        self,
        to: Addresses = None,
        subject: str | None = "[no subject]",
        message: Body = "[no message]",
        attachments: Attachments = None,
        cc: Addresses = None,
        bcc: Addresses = None,
        reply_to: Addresses = None,
        sender: str | None = None,
        encoding: str = "utf-8",
        raw: bool = False,
        headers: Mapping[str, object] | None = {},  # noqa: B006 (Mail.send's; never changed)
        from_address: str | None = None,
        dkim: DkimKey | None = None,
        list_unsubscribe: str | None = None,
        cipher_type: str | None = None,
        sign: object = None,
        sign_passphrase: object = None,
        encrypt: object = None,
        x509_sign_keyfile: object = None,
        x509_sign_chainfile: object = None,
        x509_sign_certfile: object = None,
        x509_crypt_certfiles: object = None,
        x509_nocerts: object = None,
        pe_id: PeIds = None,
        priority: int | None = None,
        not_before: datetime.datetime | None = None,
        expires_on: datetime.datetime | None = None,
        *extra: object,
        **unknown: object,
    ) -> bool:
        """Queue a message; True when queued, False (see ``self.error``) if not.

        Extra keywords: ``pe_id`` (send to a person entity's e-mail contact,
        looked up at delivery; a list of them: one message each, all or
        none), ``priority`` (1 urgent ... 9 bulk; default
        ``settings.default_priority``), ``not_before`` and ``expires_on``
        (naive UTC datetimes). Never raises and never touches the network;
        the row commits or rolls back with the caller's transaction.
        """
        self.error, self.result = None, {}
        try:
            self._no_extra(extra, unknown)
            if dkim is not None:
                raise mime.InvalidMessage(
                    "a per-message dkim key is not kept in the "
                    "outbox; set mail.settings.dkim instead"
                )
            pe_ids = _pe_ids(pe_id, to or cc or bcc)
            msg = self._message(
                to,
                subject,
                message,
                attachments,
                cc,
                bcc,
                reply_to,
                sender,
                encoding,
                raw,
                headers,
                from_address,
                list_unsubscribe,
                cipher_type,
                pe_ids[0],
            )
            priority = self._schedule(priority, not_before, expires_on)
            if not (msg.to or msg.cc or msg.bcc) and "pr_contact" not in self.db.tables:
                raise mime.InvalidMessage(
                    "pe_id %s given without an address, and this "
                    "app defines no pr_contact table" % pe_ids[0]
                )
            result = self._enqueue(msg, pe_id, priority, not_before, expires_on)
        except mime.InvalidMessage as e:
            self.error = str(e)
            logger.info("mail not queued: %s", self.error)
            return False
        except Exception as e:  # a database error must not become a ticket
            self.error = "could not queue the message: %s: %s" % (type(e).__name__, e)
            logger.exception("mail not queued")
            return False
        self.result = result
        return True

    def _enqueue(
        self,
        msg: Message,
        pe_id: PeIds,
        priority: int,
        not_before: datetime.datetime | None,
        expires_on: datetime.datetime | None,
    ) -> dict[str, object]:
        """Queue ``msg`` once, or once for each of a list of pe_ids; the
        result dict of send()."""
        sender = msg.sender or self.settings.sender
        # the store's sender, priority, not_before and expires_on
        schedule = (msg.sender, priority, not_before, expires_on)
        if not isinstance(pe_id, (list, tuple)):
            message_id = mime.make_message_id(sender)
            row_id = self.store.enqueue(msg, message_id, pe_id, *schedule)
            return dict(id=row_id, message_id=message_id)
        recipients = [(mime.make_message_id(sender), p) for p in pe_id]
        ids = self.store.enqueue_many(msg, recipients, *schedule)
        return dict(id=ids[0], ids=ids, message_id=recipients[0][0])

    @staticmethod
    def _no_extra(extra: tuple[object, ...], unknown: dict[str, object]) -> None:
        """Arguments Mail.send does not take: refused, not a TypeError."""
        if extra:
            raise mime.InvalidMessage(
                "send() got %d positional argument(s) more than Mail.send takes" % len(extra)
            )
        if unknown:
            raise mime.InvalidMessage(
                "send() got unknown keyword argument(s): %s" % ", ".join(sorted(unknown))
            )

    def _schedule(
        self,
        priority: int | None,
        not_before: datetime.datetime | None,
        expires_on: datetime.datetime | None,
    ) -> int:
        """The priority to queue with, after checking send()'s scheduling
        keywords; raises InvalidMessage."""
        for name, value in (("not_before", not_before), ("expires_on", expires_on)):
            if value is not None and not isinstance(value, datetime.datetime):
                raise mime.InvalidMessage("%s must be a datetime" % name)
        if priority is None:  # a bad setting: its default (the check says so)
            priority = read_value(self.settings, "default_priority")[0]
        if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 9:
            raise mime.InvalidMessage("priority must be an integer from 1 to 9")
        return priority

    def _message(
        self,
        to: Addresses,
        subject: str | None,
        message: Body,
        attachments: Attachments,
        cc: Addresses,
        bcc: Addresses,
        reply_to: Addresses,
        sender: str | None,
        encoding: str,
        raw: bool,
        headers: Mapping[str, object] | None,
        from_address: str | None,
        list_unsubscribe: str | None,
        cipher_type: object,
        pe_id: int | None,
    ) -> Message:
        """The checked message as data, with Mail's settings as defaults;
        raises InvalidMessage. Shared by send() and send_direct_email()."""
        if cipher_type or self.settings.cipher_type:
            raise mime.InvalidMessage(
                "encrypted or signed mail (cipher_type) is not supported by the outbox"
            )
        return mime.normalize(
            to,
            subject,
            message,
            attachments,
            cc,
            bcc,
            reply_to,
            sender,
            encoding,
            raw,
            headers,
            from_address,
            list_unsubscribe or read_value(self.settings, "list_unsubscribe")[0],
            pe_id,
            read_value(self.settings, "max_size")[0],
        )

    # ----------------------------------------------------------------- direct
    def send_direct_email(
        self,
        to: Addresses,
        subject: str | None = "[no subject]",
        message: Body = "[no message]",
        attachments: Attachments = None,
        cc: Addresses = None,
        bcc: Addresses = None,
        reply_to: Addresses = None,
        sender: str | None = None,
        encoding: str = "utf-8",
        raw: bool = False,
        headers: Mapping[str, object] | None = {},  # noqa: B006 (Mail.send's; never changed)
        from_address: str | None = None,
        dkim: DkimKey | None = None,
        list_unsubscribe: str | None = None,
        **ignored: object,
    ) -> bool:
        """Send now with the current settings (SMTP, or the configured
        transport); True or False.

        Sets ``self.error`` (a str, or None), ``self.result`` (the refused
        recipients, as smtplib reports them) and ``self.reply`` (the server's
        whole reply to the message, or None). Never raises.
        """
        self.error, self.result, self.reply = None, {}, None
        try:
            msg = self._message(
                to,
                subject,
                message,
                attachments,
                cc,
                bcc,
                reply_to,
                sender,
                encoding,
                raw,
                headers,
                from_address,
                list_unsubscribe,
                ignored.get("cipher_type"),
                None,
            )
            outcome = self._send_now(msg, dkim)
        except mime.InvalidMessage as e:
            outcome = Outcome(Kind.PERMANENT, None, str(e))
        except Exception as e:  # send_direct_email() never raises: False and mail.error
            logger.warning("direct mail failed unexpectedly", exc_info=True)
            outcome = Outcome(Kind.PERMANENT, None, "%s: %s" % (type(e).__name__, e))
        self.result = dict(outcome.refused or {}, **(outcome.deferred or {}))
        self.reply = outcome.reply
        if outcome.kind != Kind.SENT:
            self.error = outcome.error
            logger.warning("direct mail not sent: %s", self.error)
            return False
        return True

    def _send_now(self, msg: Message, dkim: DkimKey | None) -> Outcome:
        """Build ``msg`` and send it over a new session; its Outcome."""
        snapshot = Snapshot(self.settings)
        problem = snapshot.blocking_problem()
        if problem:  # before building: an unset sender cannot make a From
            return Outcome(Kind.CONFIG, None, problem)
        sender = msg.sender or snapshot.sender or ""  # a sender: checked above
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        data = message_bytes(msg, sender, mime.make_message_id(sender), now, dkim or snapshot.dkim)
        session = snapshot.transport()
        failed = session.open()
        if failed is not None:
            return failed
        try:
            return session.send(mime.bare(sender), msg.recipients(), data)
        finally:
            session.close()

    # ----------------------------------------------------------------- worker
    def process_outbox(self, limit: int | None = None) -> Counts:
        """One delivery pass over due mail; commits; returns counts.

        Keys: sent, retry, failed, held (this pass), refused and deferred
        (recipients refused for good, and for now: they are tried again),
        released (held mail queued again), connections (SMTP connections made).
        A failure of the pass itself is logged and reported as ``error``.
        """
        try:
            counts: Counts = dict(Pass(self).run(limit))
        except Exception as e:  # a pass never raises: the counts carry the error
            error = "%s: %s" % (type(e).__name__, e)
            if error != self._pass_error:  # once per outage, not once per poll
                logger.exception("delivery pass failed")
            self._pass_error = error
            return dict(
                sent=0,
                retry=0,
                failed=0,
                held=0,
                refused=0,
                deferred=0,
                released=0,
                connections=0,
                error=error,
            )
        if self._pass_error is not None:
            logger.info("delivery passes work again after: %s", self._pass_error)
            self._pass_error = None
        return counts

    def work(
        self,
        seconds: float | None = None,
        poll: float = 0.5,
        refresh: Callable[["MailS3"], object] | None = None,
    ) -> dict[str, int]:
        """Run passes for ``seconds`` (None: until a stop signal), looking
        for new mail every ``poll`` s when idle; the summed counts.

        ``refresh(mail)`` is called before each pass so that edited settings
        take effect at once (the app re-reads private/appconfig.ini there).
        While delivery is paused (see pause()) no pass runs. A SIGTERM or
        SIGINT ends it after the current pass, with its results committed
        (a worker being stopped).
        """
        with stop_signals() as stopped:
            return self._work(seconds, poll, refresh, stopped)

    def _work(
        self,
        seconds: float | None,
        poll: float,
        refresh: Callable[["MailS3"], object] | None,
        stopped: list[int],
    ) -> dict[str, int]:
        total: dict[str, int] = {}
        deadline = None if seconds is None else time.monotonic() + seconds
        while not stopped:
            counts = self.deliver_some(refresh, limit=None)
            for key, value in counts.items():
                if type(value) is int:
                    total[key] = total.get(key, 0) + value
            busy = counts.get("sent") or counts.get("retry") or counts.get("failed")
            left = poll if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            if not busy:
                time.sleep(min(poll, left))
        return total

    def deliver_some(
        self, refresh: Callable[["MailS3"], object] | None = None, limit: int | None = None
    ) -> Counts:
        """``refresh(mail)`` then one pass of at most ``limit`` messages,
        unless delivery is paused (then counts with ``paused`` True)."""
        try:
            if self.paused():
                return dict(paused=True)
        except Exception:  # the worker goes on: the database may be back next time
            self.store.rollback()
            logger.exception("could not read whether delivery is paused")
            return dict(error="pause state unreadable")
        if refresh is not None:
            try:
                refresh(self)
            except Exception:  # the app's code: anything; the settings read before stay
                logger.exception("could not re-read the mail settings")
        counts = self.process_outbox(limit)
        bounces.when_due(self)  # every bounce_interval, one worker at a time
        return counts

    # ------------------------------------------------------------ pausing
    def paused(self) -> dict[str, str] | None:
        """The pause in force ({by, since}), or None. Ends the transaction
        it reads in, so that a pause made elsewhere is seen at once."""
        with self.store.transaction():
            return self.store.get_state(PAUSE)

    def pause(self, who: str) -> bool:
        """Stop delivery by every worker until resume(); commits. Mail is
        still queued meanwhile. False if it was paused already."""
        with self.store.transaction():
            if self.store.get_state(PAUSE):
                return False
            self.store.set_state(PAUSE, dict(by=who, since=str(utcnow())))
        logger.warning("delivery paused by %s", who)
        return True

    def resume(self, who: str) -> bool:
        """Let delivery go on after pause(); commits. False if not paused."""
        with self.store.transaction():
            if not self.store.get_state(PAUSE):
                return False
            self.store.set_state(PAUSE, None)
        logger.warning("delivery resumed by %s", who)
        return True


@contextlib.contextmanager
def stop_signals() -> Iterator[list[int]]:
    """A list that gets an item when SIGTERM or SIGINT arrives, meanwhile.

    Only the main thread can take signals (a scheduler's task process); in
    any other thread the list stays empty. The previous handlers come back
    afterwards.
    """
    stopped: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return
    previous = taken_signals()

    def stop(signum: int, frame: FrameType | None) -> None:
        if not stopped:
            logger.info("delivery stopping after this pass (signal %d)", signum)
        stopped.append(signum)

    for signum in previous:
        signal.signal(signum, stop)
    try:
        yield stopped
    finally:
        restore(previous)
