"""The outbox inside Sahana Eden: ``EdenMail`` is Eden's ``current.mail``.

What differs from a plain web2py app (scripts/eden_install.py wires it in):

- Settings come from Eden's deployment settings (``settings.mail.server``,
  ``.sender``, ``.login``, ``.tls``, ``.limit`` a day, the account-flow
  limits ``.flow_per_address`` and every other ``[outbox]`` key,
  ``settings.base.public_url`` and ``.host_names``),
  read before every delivery pass. A worker re-executes models/000_config.py
  when the file changed, so an edit takes effect on the next pass.
  Held reasons and the settings check name those settings and that file.
- ``send(pe_id=N)`` resolves N through ``current.s3db`` (Eden loads tables
  lazily): a person is queued as one row whose address is looked up in
  ``pr_contact`` at delivery; a group, forum or organisation (a distribution
  list) is queued as one row per member person, the expansion Eden's own
  ``S3Msg.process_outbox`` makes.
- Eden's own ``msg_outbox`` tells the outcome. When Eden's
  ``process_outbox`` hands an EMAIL over and marks its row Sent, the row is
  linked to the outbox message (a pydal update callback on that table: no
  Eden file changes): Sent means handed over, as to a local mail server's
  queue; after each delivery pass the link sets it Failed (5) if the mail
  failed (or bounced later, bounces.py), Unsent (1) while it is held (the
  reason is on the dashboard), Sent (2) again once it went out. A row Eden
  hands over again (two runners of process_outbox, or a held row) is never
  queued twice: the link has a unique key on Eden's row, inserted or
  nothing, in the transaction that queued the mail. A group, forum or
  organisation row that Eden expands into rows of its own is claimed the
  same way; a second process's expansion of it is undone, and the first
  hands all its rows over at once.
"""

import inspect
import io
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from gluon import current
from gluon.storage import Storage
from gluon.tools import Mail
from pydal import Field

from .bounces import reader as bounces
from .delivery.pydal_internals import db_engine, uri_hash
from .delivery.schedule import deliver_when_idle, ensure_tasks, spawn_for
from .delivery.settings import apply_config, outbox_keys
from .delivery.store import DAL, Logged, Query, Row, Status, Table, utcnow
from .mailer import Counts, MailS3

logger = logging.getLogger("s3outbox")

CONFIG_FILE = "models/000_config.py"
TASK = "s3outbox_deliver"
# What the settings check and held reasons call each setting in Eden.
NAMES = {
    "file": CONFIG_FILE,
    "[smtp] server": "settings.mail.server",
    "[smtp] sender": "settings.mail.sender",
    "[smtp] login": "settings.mail.login",
    "[smtp] tls": "settings.mail.tls",
    "[smtp] ssl": "settings.mail.ssl",
    "[smtp] tls and [smtp] ssl": "settings.mail.tls",
    "[smtp] server, sender and login": "settings.mail.server, .sender and .login",
    "[app] public_url": "settings.base.public_url",
    "[outbox] rate_limit": "settings.mail.limit",
    "[outbox] pipelining": "settings.mail.pipelining",
    "[host] names": "settings.base.host_names",
    "[outbox] flow_*": "settings.mail.flow_*",
    "[outbox] bounce_*": "settings.mail.bounce_*",
}
# Distribution lists: entity table -> (membership table, its key to the entity),
# as Eden's S3Msg.process_outbox expands them.
LISTS = {
    "pr_group": ("pr_group_membership", "group_id"),
    "pr_forum": ("pr_forum_membership", "forum_id"),
    "org_organisation": ("hrm_human_resource", "organisation_id"),
}
# Eden's msg_outbox status for an outcome here (1 Unsent, 2 Sent, 5 Failed):
# Sent from the hand-over on, as with a local mail server's queue.
EDEN_STATUS: dict[str, int] = {
    Status.SENT: 2,
    Status.FAILED: 5,
    Status.CANCELLED: 5,
    Status.BOUNCED: 5,
    Status.HELD: 1,
}
SYNC_EVERY = 30  # seconds between checks for outcomes to copy when idle
EXPANDED = "expanded"  # a link's status for a list's row Eden expanded
UNIQUE_STATE = "eden_link_unique"
# (database URI, link table) whose unique key this process saw
_UNIQUE_DONE: set[tuple[str, str]] = set()

_SEND = inspect.signature(MailS3.send)

# Eden's deployment settings (S3Config) and scheduler (S3Task): no type information.
Config = Any


def eden_get(cfg: Config) -> Callable[[str], object]:
    """A ``get(key)`` over Eden's deployment settings, for apply_config()."""
    limit = cfg.get_mail_limit()
    values = {
        "smtp.server": cfg.get_mail_server(),
        "smtp.sender": cfg.get_mail_sender(),
        "smtp.login": cfg.get_mail_server_login() or None,
        "smtp.tls": cfg.get_mail_server_tls(),
        "smtp.ssl": cfg.mail.get("ssl"),  # not Eden's own: for port 465
        # not Eden's own either: False for a relay that mishandles pipelining
        "outbox.pipelining": cfg.mail.get("pipelining", True),
        # (limit,): a tuple written there made this raise, every page a ticket
        "outbox.rate_limit": "%s/day" % (limit,) if limit else None,
        "app.public_url": cfg.base.get("public_url"),
        "host.names": cfg.base.get("host_names"),  # edenguard.check_host
        # not Eden's own either: the bounce mailbox's certificate is checked
        # unless self_signed_certificate, as in web2py
        "smtp.self_signed_certificate": cfg.mail.get("self_signed_certificate"),
    }
    # The delivery settings (settings.mail.batch_size, .timeout...), the
    # account-flow limits and retention (settings.mail.flow_per_address...),
    # the bounce settings (settings.mail.bounce_address..., docs/bounces.md)
    for key in outbox_keys():
        values.setdefault("outbox." + key, cfg.mail.get(key))
    return values.get


def config_names() -> dict[str, str]:
    """NAMES, and each ``[outbox] key`` as ``settings.mail.key``: the core's
    keys and those of the parts registered with it (accounts, bounces)."""
    names = {"[outbox] %s" % key: "settings.mail.%s" % key for key in outbox_keys()}
    names.update(NAMES)
    return names


class DocumentFile(Mail.Attachment):
    """``Mail.Attachment`` as Eden's process_outbox uses it (``mail.Attachment(path)``):
    a file that cannot be read is an attachment with its ``problem`` rather
    than an exception, which stopped Eden's loop at that row in every run;
    send() queues such mail failed, naming the file."""

    problem: str | None = None

    def __init__(self, payload: object, filename: str | None = None, *args: Any, **kwargs: Any):
        try:
            Mail.Attachment.__init__(self, payload, filename, *args, **kwargs)
        except OSError as e:
            if not isinstance(payload, str):
                raise
            self._empty(payload, filename, "%s: %s" % (type(e).__name__, e))

    @classmethod
    def unreadable(cls, path: str, problem: str) -> "DocumentFile":
        """An attachment for ``path`` that could not be read, for ``problem``."""
        made: DocumentFile = cls.__new__(cls)
        made._empty(path, None, problem)
        return made

    def _empty(self, path: str, filename: str | None, problem: str) -> None:
        Mail.Attachment.__init__(self, io.BytesIO(b""), filename or os.path.basename(path))
        self.problem = problem


class EdenMail(MailS3):
    """MailS3 configured by, and reporting to, Sahana Eden."""

    Attachment = DocumentFile

    def __init__(self, db: DAL, tablename: str = "msg_mail_outbox") -> None:
        cfg = current.deployment_settings
        migrate = cfg.get_base_migrate()
        MailS3.__init__(self, db, tablename=tablename, migrate=migrate)
        self.settings.config_names = config_names()
        self._config = (self._config_stamp(), cfg)
        self._pending: list[int] = []  # outbox ids queued since Eden's last hand-over
        self._inserted: list[int] = []  # Eden's msg_outbox rows inserted since then
        self._synced_at: float = 0
        name = tablename + "_eden"
        if name not in db.tables:
            db.define_table(
                name,
                Field("outbox_id", "integer"),
                Field("eden_outbox_id", "integer"),
                Field("status", length=16),
                migrate=migrate,
            )
        self.link = db[name]
        self._unique_links()
        self._watch_eden_outbox()
        self.refresh()

    def _unique_links(self) -> None:
        """The unique key that makes a hand-over insert-or-nothing: one link,
        so one message, an Eden row. Once a database (a state row says so)
        and a process; links an older version doubled lose their copies."""
        table, store = str(self.link), self.store
        if (uri_hash(self.db), table) in _UNIQUE_DONE:
            return
        if store.get_state(UNIQUE_STATE) != table:
            store.make_unique(table, "eden_outbox_id", table + "_row")
            store.take_turn(UNIQUE_STATE, None, table, utcnow())
        _UNIQUE_DONE.add((uri_hash(self.db), table))

    # --------------------------------------------------------------- settings
    def refresh(self) -> None:
        """Copy Eden's current mail settings onto ``self.settings``."""
        apply_config(self, eden_get(self._deployment_settings()))

    @staticmethod
    def _config_stamp() -> tuple[int, int, int] | None:
        path = os.path.join(current.request.folder, "models", "000_config.py")
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _deployment_settings(self) -> Config:
        """Eden's settings, from a fresh run of 000_config.py if it changed
        since this process ran the models (a worker's task runs a minute)."""
        stamp, cfg = self._config
        now = self._config_stamp()
        if now != stamp:
            try:
                cfg = self._reread()
            except Exception:  # 000_config.py is code: anything; the pass goes on
                logger.exception(
                    "could not re-read %s; keeping the settings read before", CONFIG_FILE
                )
            self._config = (now, cfg)
        return cfg

    @staticmethod
    def _reread() -> Config:
        from s3cfg import S3Config  # Eden's own settings class

        cfg = S3Config()
        path = os.path.join(current.request.folder, "models", "000_config.py")
        with open(path, encoding="utf-8") as f:
            code = compile(f.read(), path, "exec")
        exec(
            code,
            dict(
                settings=cfg,
                T=current.T,
                current=current,
                request=current.request,
                response=current.response,
                session=current.session,
                Storage=Storage,
            ),
        )
        return cfg

    # ------------------------------------------------------------------ queue
    def send(self, *args: object, **kwargs: object) -> bool:
        """MailS3.send (the same arguments), with ``pe_id`` resolved through Eden's tables."""
        self.error, self.result = None, {}
        try:
            call = self._arguments(args, kwargs)
        except LookupError as e:
            self.error = str(e)
            return False
        pe_id = call.get("pe_id")
        if pe_id is None or call.get("to") or call.get("cc") or call.get("bcc"):
            ok = self._send_whole(call)
            if ok:
                self._handed_over([self.result["id"]])
            return ok
        try:
            persons = self.persons(pe_id)
        except LookupError as e:
            self.error = str(e)
            return False
        except Exception as e:  # send() never raises: a database error is mail.error
            self.error = "could not look up pe_id %s: %s: %s" % (pe_id, type(e).__name__, e)
            logger.exception("pe_id lookup")
            return False
        call["pe_id"] = persons
        return self._send_whole(call)  # one savepoint: all or none

    def _send_whole(self, call: dict[str, Any]) -> bool:
        """MailS3.send, but never without a file that could not be read (a
        ``DocumentFile`` with its ``problem``): such mail is queued failed,
        naming it, in the same savepoint."""
        files = call.get("attachments")
        files = (
            list(files) if isinstance(files, (list, tuple)) else [] if files is None else [files]
        )
        problems = [f.problem for f in files if getattr(f, "problem", None)]
        if not problems:
            return MailS3.send(self, **call)
        why = "not sent: an attachment could not be read: " + "; ".join(problems)
        try:
            with self.store.savepoint():
                if not MailS3.send(self, **dict(call, attachments=None)):
                    return False
                self.store.fail_unsent(
                    self.result.get("ids") or [self.result["id"]], why, len(files)
                )
        except Exception as e:  # send() never raises: a database error is mail.error
            self.error = "could not queue the message: %s: %s" % (type(e).__name__, e)
            logger.exception("mail not queued")
            return False
        logger.error("mail %s failed: %s", self.result["message_id"], why)
        return True

    def _arguments(self, args: tuple[object, ...], kwargs: dict[str, object]) -> dict[str, Any]:
        """send()'s arguments by name; LookupError with the reason for those
        it cannot take (MailS3.send refuses unknown keywords itself)."""
        try:
            call = _SEND.bind(self, *args, **kwargs).arguments
        except TypeError as e:
            raise LookupError("send() arguments: %s" % e) from None
        call.pop("self")
        call.update(call.pop("unknown", {}))
        if call.pop("extra", ()):
            raise LookupError("send() got positional arguments more than Mail.send takes")
        pe_id = call.get("pe_id")
        if pe_id is not None and (isinstance(pe_id, bool) or not isinstance(pe_id, int)):
            raise LookupError("pe_id must be an integer, not %r" % (pe_id,))
        return call

    def persons(self, pe_id: int) -> list[int]:
        """The person pe_ids that mail for entity ``pe_id`` goes to; raises
        LookupError with the reason when there are none."""
        s3db, db = current.s3db, self.db
        s3db.table("pr_contact")  # defines it: delivery reads it
        pentity = s3db.table("pr_pentity")
        try:
            pe_id = int(pe_id)
        except (TypeError, ValueError):
            raise LookupError("pe_id %r is not a number" % (pe_id,)) from None
        row = db(pentity.pe_id == pe_id).select(pentity.instance_type, limitby=(0, 1)).first()
        if row is None:
            raise LookupError("there is no person entity %s" % pe_id)
        kind = row.instance_type
        if kind == "pr_person":
            return [pe_id]
        if kind not in LISTS:
            raise LookupError(
                "person entity %s is a %s: mail goes to persons, "
                "groups, forums and organisations" % (pe_id, kind)
            )
        entity, person = s3db.table(kind), s3db.table("pr_person")
        members = s3db.table(LISTS[kind][0])
        if members is None:
            raise LookupError(
                "person entity %s (%s) has no members: %s is not "
                "enabled" % (pe_id, kind, LISTS[kind][0])
            )
        query = (
            (entity.pe_id == pe_id)
            & (members[LISTS[kind][1]] == entity.id)
            & (members.deleted == False)  # noqa: E712 (a pydal query)
            & (person.id == members.person_id)
            & (person.deleted == False)  # noqa: E712
        )
        found = [
            r.pe_id for r in db(query).select(person.pe_id, distinct=True, orderby=person.pe_id)
        ]
        if not found:
            raise LookupError("person entity %s (%s) has no members to send to" % (pe_id, kind))
        return found

    # --------------------------------------------- Eden's msg_outbox, honest
    def _watch_eden_outbox(self) -> None:
        """Eden defines its msg_outbox lazily, in some requests only: the
        callbacks below go on it when it is defined (pydal's ``on_define``,
        added to the definition), so Eden's code stays as it is."""
        db, define = self.db, self.db.define_table
        if "msg_outbox" in db.tables:
            return self._watch(db.msg_outbox)

        def define_table(tablename: str, *fields: object, **kwargs: Any) -> Table:
            if tablename == "msg_outbox":
                kwargs["on_define"] = _chain(kwargs.get("on_define"), self._watch)
            return define(tablename, *fields, **kwargs)

        db.define_table = define_table

    def _watch(self, table: Table) -> None:
        table._after_insert.append(self._eden_row_insert)
        table._before_update.append(self._eden_row_update)

    def _handed_over(self, ids: list[int]) -> None:
        """Remember queued ids while Eden's msg_outbox is loaded: its
        process_outbox marks the row it handed over (to one address) Sent
        right after send()."""
        if "msg_outbox" in self.db.tables:
            self._pending.extend(ids)

    def _eden_row_insert(self, fields: dict[str, object], row_id: int) -> None:
        """After an insert into Eden's msg_outbox: its process_outbox inserts
        a row a member when it expands a list, then marks the list Sent (mail
        queued before is no hand-over of that list)."""
        self._inserted.append(row_id)
        self._pending = []

    def _eden_row_update(self, dbset: Query, fields: dict[str, object]) -> bool:
        """Before an update of Eden's msg_outbox to Sent: a hand-over is
        linked, or its copy dropped and the update cancelled (True) when the
        row was handed over before; a list's expansion is kept only by the
        first process to claim that list's row."""
        pending, self._pending = self._pending, []
        inserted, self._inserted = self._inserted, []
        if fields.get("status") != 2 or not (pending or inserted):
            return False
        eden = self.db.msg_outbox
        rows = dbset.select(eden.id, eden.message_id, limitby=(0, 2))
        if len(rows) != 1:
            return False
        row = rows.first()
        claimed = self.store.insert_or_nothing(
            str(self.link),
            dict(
                outbox_id=pending[-1] if pending else None,
                eden_outbox_id=row.id,
                status=Status.QUEUED.value if pending else EXPANDED,
            ),
        )
        if pending:  # pending[-1] is what Eden's send_email() just queued
            if not claimed:
                self.store.drop(pending[-1:])  # handed over before: the copy goes
            return not claimed
        members = self.db(
            eden.id.belongs(inserted) & (eden.message_id == row.message_id) & (eden.id != row.id)
        )
        if not claimed:  # another process expanded this list: undo our copy
            members.delete()
        else:
            self._hand_over_members(row.message_id, members)
        return False

    def _hand_over_members(self, message_id: str, members: Query) -> None:
        """Queue the rows of a list Eden just expanded, all at once: one
        message, one insert a member, one savepoint, one link a row, and the
        rows Sent, so Eden's loop has none of them left to hand over. Its
        attachments are read once, as that loop reads them, and their bytes
        stored once; a document that cannot be read fails the members' mail
        with its name."""
        db, s3db = self.db, current.s3db
        s3db.table("pr_contact")  # defines it: delivery reads it
        email = s3db.table("msg_email")
        found = (
            db(email.message_id == message_id)
            .select(email.subject, email.body, email.from_address, limitby=(0, 1))
            .first()
        )
        rows = members.select(db.msg_outbox.id, db.msg_outbox.pe_id, orderby=db.msg_outbox.id)
        if found is None or not rows:
            return
        try:
            with self.store.savepoint():  # the messages and their links, or neither
                if not self._send_whole(
                    dict(
                        pe_id=[r.pe_id for r in rows],
                        subject=found.subject or "",
                        message=found.body or "",
                        attachments=self._documents(message_id) or None,
                        sender=found.from_address or None,
                    )
                ):
                    raise ValueError(self.error)
                self.link.bulk_insert(
                    [
                        dict(outbox_id=outbox_id, eden_outbox_id=r.id, status=Status.QUEUED.value)
                        for r, outbox_id in zip(rows, self.result["ids"], strict=False)
                    ]
                )
                members.update(status=2)  # handed over: Eden's loop skips them
        except Exception:  # Eden's loop sends what we could not take
            logger.exception("mail to the list left to Eden's own loop")

    def _documents(self, message_id: str) -> list["DocumentFile"]:
        """The files of Eden's documents attached to message ``message_id``,
        read as Eden's process_outbox reads them (msg_attachment to
        doc_document, the file in its upload field's folder); one that
        cannot be read has its ``problem``, naming the document."""
        s3db = current.s3db
        attached, document = s3db.table("msg_attachment"), s3db.table("doc_document")
        if attached is None or document is None:
            return []
        field = document.file
        where = field.custom_retrieve_file_properties or field.retrieve_file_properties
        rows = self.db(
            (attached.message_id == message_id)
            & (attached.deleted == False)  # noqa: E712
            & (attached.document_id == document.id)
            & (document.deleted == False)  # noqa: E712
        ).select(document.id, field, orderby=attached.id)
        files = []
        for row in rows:
            try:
                path = os.path.join(where(row.file)["path"], row.file)
            except Exception as e:  # noqa: BLE001 (no file, a custom retrieve: named, mail failed)
                why = "doc_document %s: %s: %s" % (row.id, type(e).__name__, e)
                files.append(DocumentFile.unreadable(str(row.file), why))
                continue
            found = DocumentFile(path)
            if found.problem:
                found.problem = "doc_document %s: %s" % (row.id, found.problem)
            files.append(found)
        return files

    def sync_eden(self) -> int:
        """Copy outcomes to the linked rows of Eden's msg_outbox (Failed,
        Unsent while held, Sent again once out); commits."""
        link, o, db = self.link, self.store.outbox, self.db
        rows = db(
            (link.outbox_id == o.id)
            & (link.status != o.status)
            & o.status.belongs(list(EDEN_STATUS))
        ).select(link.id, link.eden_outbox_id, o.status, limitby=(0, 500))
        if rows:
            eden = current.s3db.table("msg_outbox")
            outcomes: dict[str, list[Row]] = {}
            for r in rows:
                outcomes.setdefault(r[o.status], []).append(r)
            with self.store.transaction():  # two statements an outcome
                for status, found in outcomes.items():
                    db(eden.id.belongs([r[link.eden_outbox_id] for r in found])).update(
                        status=EDEN_STATUS[status]
                    )
                    db(link.id.belongs([r[link.id] for r in found])).update(status=status)
        return len(rows)

    # ----------------------------------------------------------------- worker
    def process_outbox(self, limit: int | None = None) -> Counts:
        """A delivery pass with Eden's settings of now, then Eden's records."""
        try:
            self.refresh()
            current.s3db.table("pr_contact")  # so delivery can resolve pe_id
        except Exception:  # Eden's code: anything; the pass goes on with the settings it has
            logger.exception("could not read Eden's mail settings")
        counts = MailS3.process_outbox(self, limit)
        busy = counts.get("sent") or counts.get("failed") or counts.get("held")
        if busy or time.monotonic() - self._synced_at >= SYNC_EVERY:
            self._synced_at = time.monotonic()
            try:
                counts["eden_updated"] = self.sync_eden()
            except Exception:  # a pass never raises: the next one copies them
                self.store.rollback()
                logger.exception("could not update Eden's msg_outbox")
        return counts


def _chain(
    first: Callable[[Table], object] | None, then: Callable[[Table], object]
) -> Callable[[Table], object]:
    """One on_define callback that runs ``first`` (if any), then ``then``."""
    if first is None:
        return then

    def both(table: Table) -> None:
        first(table)
        then(table)

    return both


def bounced_persons(mail: EdenMail, limit: int = 200) -> list[dict[str, object]]:
    """The persons whose e-mail bounced, newest first, once each: a dict with
    the person's id and name, the address, status, diagnostic and date. A
    message queued by pe_id names its person; one queued to an address is
    matched to the persons that have it as an EMAIL contact."""
    b, o = bounces.define_table(mail.store), mail.store.outbox
    rows = mail.db((b.outbox_id == o.id) & (b.kind == Logged.BOUNCED)).select(
        b.recipient,
        b.status,
        b.diagnostic,
        b.received_on,
        o.pe_id,
        orderby=~b.id,
        limitby=(0, limit),
    )
    by_address = _contacts(
        mail.db, {r[b.recipient] for r in rows if not r[o.pe_id] and r[b.recipient]}
    )
    persons = _persons(
        mail.db,
        {r[o.pe_id] for r in rows if r[o.pe_id]}
        | {pe for found in by_address.values() for pe in found},
    )
    out: list[dict[str, object]] = []
    seen: set[int] = set()
    for r in rows:
        for pe_id in [r[o.pe_id]] if r[o.pe_id] else by_address.get(r[b.recipient], []):
            p = persons.get(pe_id)
            if p is not None and p.id not in seen:
                seen.add(p.id)
                name = " ".join(n for n in (p.first_name, p.middle_name, p.last_name) if n)
                out.append(
                    dict(
                        person_id=p.id,
                        name=name or "person %d" % p.id,
                        address=r[b.recipient],
                        status=r[b.status],
                        diagnostic=r[b.diagnostic],
                        received_on=r[b.received_on],
                    )
                )
    return out


def _contacts(db: DAL, addresses: set[str]) -> dict[str, list[int]]:
    """{lower-case address: [pe_id]} of Eden's EMAIL contacts."""
    found: dict[str, list[int]] = {}
    if addresses:
        c = current.s3db.table("pr_contact")
        for row in db(
            (c.contact_method == "EMAIL")
            & (c.deleted == False)  # noqa: E712
            & c.value.lower().belongs(addresses)
        ).select(c.value, c.pe_id):
            found.setdefault(row.value.lower(), []).append(row.pe_id)
    return found


def _persons(db: DAL, pe_ids: set[int]) -> dict[int, Row]:
    """{pe_id: pr_person row} of the persons (not deleted) among ``pe_ids``."""
    if not pe_ids:
        return {}
    p = current.s3db.table("pr_person")
    query = p.pe_id.belongs(pe_ids) & (p.deleted == False)  # noqa: E712
    return {
        r.pe_id: r
        for r in db(query).select(p.id, p.pe_id, p.first_name, p.middle_name, p.last_name)
    }


def register_task(
    tasks: dict[str, Callable[..., object]], s3task: Config, period: int = 60
) -> None:
    """Add the delivery task to Eden's ``tasks`` and keep it scheduled.

    The task runs in the scheduler group ``s3outbox`` (its worker:
    ``python web2py.py -K eden:s3outbox``) and delivers until that worker is
    stopped, so Eden's own tasks never wait behind it. It is (re)queued
    whenever it is missing, FAILED, STOPPED or EXPIRED (checked at most
    every five minutes a process) and retries failures. Eden's plain worker
    (``-K eden``) delivers between Eden's tasks while no ``s3outbox`` worker
    is alive, so mail still goes out on a site that runs only that one.
    """

    def s3outbox_deliver(user_id: int | None = None) -> dict[str, int]:
        counts = current.mail.work()
        current.db.commit()
        return counts

    tasks[TASK] = s3outbox_deliver
    scheduler = getattr(s3task, "scheduler", None)
    if scheduler is None:
        return
    db = current.db
    # The scheduler checks function names against the tasks it was given;
    # it was made just before this one was added.
    from gluon.validators import IS_IN_SET

    db.scheduler_task.function_name.requires = IS_IN_SET(sorted(tasks))
    if db_engine(db) == "sqlite":
        # A forked task process can hang opening an SQLite connection; Eden's
        # own tasks keep Eden's fork (a spawned one loads all of Eden again).
        spawn_for(scheduler, TASK)
    ensure_tasks(db, scheduler, TASK, period, 1, current.cache.ram)
    deliver_when_idle(
        scheduler, lambda: current.mail.deliver_some(limit=current.mail.settings.batch_size)
    )


def retire(mail: EdenMail, force: bool = False) -> dict[str, object]:
    """Take the outbox out of Eden's scheduler, for eden_install.py --uninstall;
    commits. A report: {waiting: {status: n}, from_eden: n, paused, removed}.

    While mail waits (queued, being sent or held) nothing changes unless
    ``force``: then the mail Eden's Messaging handed over goes back to Eden
    (its msg_outbox rows Unsent again, so Eden's own process_outbox sends
    them once the outbox is gone), the rest is cancelled, and the delivery
    task's scheduler rows are deleted.
    """
    db, o, link = mail.db, mail.store.outbox, mail.link
    waiting = o.status.belongs((Status.QUEUED, Status.SENDING, Status.HELD))
    n = o.id.count()
    counts = {r[o.status]: r[n] for r in db(waiting).select(o.status, n, groupby=o.status)}
    from_eden = db(waiting & (link.outbox_id == o.id)).count()
    report = dict(waiting=counts, from_eden=from_eden, paused=bool(mail.paused()), removed=0)
    if counts and not force:
        return report
    with mail.store.transaction():
        linked = db(link.outbox_id.belongs(db(waiting)._select(o.id)))
        eden = current.s3db.table("msg_outbox")
        db(eden.id.belongs(linked._select(link.eden_outbox_id))).update(status=1)
        linked.delete()  # Eden's rows: Unsent, Eden's again
        db(waiting).update(
            status=Status.CANCELLED,
            lease_owner=None,
            lease_until=None,
            last_error="cancelled: the outbox was uninstalled",
        )
        st = db.scheduler_task
        tasks = db(st.uuid.startswith("s3outbox-"))
        db(db.scheduler_run.task_id.belongs(tasks._select(st.id))).delete()
        report["removed"] = tasks.delete()
    return report
