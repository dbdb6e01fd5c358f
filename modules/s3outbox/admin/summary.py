"""The settings as the dashboard and the command line show them: the SMTP
settings without the password, the account-mail limits and the bounce
settings in words (accounts/ and bounces/ settings.py), and which setting to
edit for a hold (the settings check itself is delivery/check.py).
"""

import re
from typing import Any

from ..accounts import settings as account_settings
from ..bounces import settings as bounce_settings
from ..delivery.check import config_file
from ..delivery.settings import Storage, read_value

# What to edit for the configuration errors the transport reports; the
# first pattern found in the reason wins.
_HINTS = (
    ("authentication", "[smtp] login"),
    ("sender", "[smtp] sender"),
    ("tls", "[smtp] tls and [smtp] ssl"),
    ("ssl", "[smtp] tls and [smtp] ssl"),
    ("resolve", "[smtp] server"),
    ("refused", "[smtp] server"),
    ("reach", "[smtp] server"),
    ("server", "[smtp] server"),
)

_ANY = "[smtp] server, sender and login"  # when no pattern is found
_NAMED_KEY = re.compile(r"\(edit (.+?)(?: in [^ ()]+)?\)$")


def edit_hint(reason: str | None, names: dict[str, str] | None = None) -> str:
    """Which setting to edit for a hold ``reason`` (renamed by ``names``)."""
    named = _NAMED_KEY.search(reason or "")
    if named:  # blocking_problem() ends with "(edit [smtp] sender)"
        key = named.group(1)
    else:
        text = (reason or "").lower()
        key = next((hint for pattern, hint in _HINTS if pattern in text), _ANY)
    return (names or {}).get(key, key)


def settings_summary(settings: Storage) -> dict[str, Any]:
    """The SMTP settings as the dashboard shows them: no password; ``keys``
    and ``file`` say where the admin edits them."""
    login = settings.login if isinstance(settings.login, str) else ""
    user = login.partition(":")[0]
    names = settings.config_names or {}
    keys = dict(
        (k, names.get("[smtp] %s" % k, "[smtp] %s" % k))
        for k in ("server", "sender", "login", "tls", "ssl")
    )
    keys["limits"] = names.get("[outbox] flow_*", "[outbox] flow_* (account mail)")
    keys["bounces"] = names.get("[outbox] bounce_*", "[outbox] bounce_*")
    return dict(
        server=settings.server or "",
        sender=settings.sender or "",
        login=("%s (password set)" % user) if user else "(none)",
        tls=read_value(settings, "tls")[0],
        ssl=read_value(settings, "ssl")[0],
        keys=keys,
        file=config_file(settings),
        limits=account_settings.summary(settings),
        bounces=bounce_settings.summary(settings),
    )
