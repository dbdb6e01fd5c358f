"""The settings check: what in the mail settings cannot be used, named as
the admin edits it (the setting, in the file the host app names).

Delivery logs it at ERROR once per change (``log_settings_check``, before
each pass and on each request); the dashboard and the command line show it
(admin/). Text that reaches the admin or the log passes through ``scrub()``,
which masks the passwords the settings hold.
"""

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Protocol, TypedDict, overload

from .pydal_internals import uri_hash
from .settings import Snapshot, Storage, part_findings, parts
from .store import DAL, OutboxStore, utcnow

logger = logging.getLogger("s3outbox")

CONFIG_FILE = "private/appconfig.ini"


class Mailer(Protocol):
    """What the check and a delivery pass read of the mailer (MailS3)."""

    settings: Storage
    db: DAL
    store: OutboxStore


class Found(TypedDict):
    """One finding as the admin and the log see it (``findings()``)."""

    key: str
    problem: str
    blocking: bool
    file: str
    where: str


def config_file(settings: Storage) -> str:
    """The file the admin edits: private/appconfig.ini, or as the host app
    names it in ``settings.config_names`` (Sahana Eden: models/000_config.py)."""
    return (settings.config_names or {}).get("file", CONFIG_FILE)


def password_of(settings: Storage) -> str:
    """The SMTP password in ``[smtp] login`` (user:password), or ''."""
    login = settings.login
    return login.partition(":")[2] if isinstance(login, str) else ""


@overload
def scrub(text: str, settings: Storage) -> str: ...
@overload
def scrub(text: object, settings: Storage) -> str | None: ...


def scrub(text: object, settings: Storage) -> str | None:
    """``text`` with every password the settings hold (if it occurs) masked:
    the SMTP password and those of the registered parts (``Part.secret``)."""
    if text is None:
        return None
    shown = str(text)
    secrets: list[Callable[[Storage], str]] = [password_of]
    for secret_of in secrets + [p.secret for p in parts() if p.secret]:
        secret = secret_of(settings)
        shown = shown.replace(secret, "********") if secret else shown
    return shown


def findings(settings: Storage) -> list[Found]:
    """Snapshot(settings).findings() and the registered parts' (accounts,
    bounces) as dicts, scrubbed, with the setting and the file to edit as the
    host app names them (``settings.config_names``)."""
    names, where = settings.config_names or {}, config_file(settings)
    found = [
        (names.get(key, key), problem, blocking)
        for key, problem, blocking in Snapshot(settings).findings() + part_findings(settings)
    ]
    return [
        Found(
            key=key,
            problem=scrub(problem, settings),
            blocking=blocking,
            file=where,
            where="%s in %s" % (key, where),
        )
        for key, problem, blocking in found
    ]


# --------------------------------------------------------- settings logging
_checked: dict[
    tuple[str, str], str
] = {}  # (database, table) -> digest of the findings last checked here


def log_settings_check(mail: Mailer) -> bool:
    """Log the settings findings at ERROR once per change, across processes.

    Cheap on every request: a process reads the outbox's ``settings_check``
    state row only when its own findings changed; the row decides which
    process logs, so a change is logged once, not once per process or message.
    The caller's transaction commits the state row.
    """
    found = findings(mail.settings)
    digest = hashlib.sha256(
        json.dumps([[f["key"], f["problem"]] for f in found]).encode("utf-8")
    ).hexdigest()[:16]
    store = mail.store
    where = (uri_hash(mail.db), store.tablename)
    if _checked.get(where) == digest:
        return False
    old = store.get_state("settings_check")
    new = dict(digest=digest)
    if old == new:
        _checked[where] = digest
        return False
    if old is None:  # insert-or-nothing: processes meeting a change at once
        store._ensure_state("settings_check", utcnow())
    if not store.set_state("settings_check", new, expect=old):
        return False  # another process took this change and logs it
    _checked[where] = digest
    for f in found:
        logger.error("mail settings: %s (edit %s)", f["problem"], f["where"])
    if not found and old is not None:
        logger.info("mail settings: the check finds no problem any more")
    return True
