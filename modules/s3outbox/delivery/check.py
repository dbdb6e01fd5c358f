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

from .pydal_internals import uri_hash
from .settings import Snapshot, part_findings, parts
from .store import utcnow

logger = logging.getLogger("s3outbox")

CONFIG_FILE = "private/appconfig.ini"


def config_file(settings):
    """The file the admin edits: private/appconfig.ini, or as the host app
    names it in ``settings.config_names`` (Sahana Eden: models/000_config.py)."""
    return (settings.config_names or {}).get("file", CONFIG_FILE)


def password_of(settings):
    """The SMTP password in ``[smtp] login`` (user:password), or ''."""
    login = settings.login
    return login.partition(":")[2] if isinstance(login, str) else ""


def scrub(text, settings):
    """``text`` with every password the settings hold (if it occurs) masked:
    the SMTP password and those of the registered parts (``Part.secret``)."""
    if text is None:
        return None
    text = str(text)
    for secret_of in [password_of] + [p.secret for p in parts() if p.secret]:
        secret = secret_of(settings)
        text = text.replace(secret, "********") if secret else text
    return text


def findings(settings):
    """Snapshot(settings).findings() and the registered parts' (accounts,
    bounces) as dicts, scrubbed, with the setting and the file to edit as the
    host app names them (``settings.config_names``)."""
    names, where = settings.config_names or {}, config_file(settings)
    found = [
        (names.get(key, key), problem, blocking)
        for key, problem, blocking in Snapshot(settings).findings() + part_findings(settings)
    ]
    return [
        dict(
            key=key,
            problem=scrub(problem, settings),
            blocking=blocking,
            file=where,
            where="%s in %s" % (key, where),
        )
        for key, problem, blocking in found
    ]


# --------------------------------------------------------- settings logging
_checked = {}  # (database, table) -> digest of the findings last checked here


def log_settings_check(mail):
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
