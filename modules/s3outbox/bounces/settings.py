"""The bounce settings: the return path, the mailbox its reports reach and
how often it is read; read with the delivery settings, checked with them,
and joined to the core through its hook (delivery.settings.register).
docs/bounces.md describes them.
"""

from collections.abc import Callable
from typing import Any

from ..delivery import returnpath
from ..delivery.settings import (
    Finding,
    Part,
    Storage,
    optional_text,
    read_raw,
    register,
    whole,
)
from . import mailboxes

# On Mail.settings, for returnpath.py and reader.py.
DEFAULTS = dict(
    bounce_address=None,  # envelope sender local+TOKEN@domain of each message
    bounce_mailbox=None,  # imaps:// or pop3s:// URL of the mailbox reports reach
    bounce_interval=300,  # seconds between reads of that mailbox
    bounce_errors=(),  # Problems: values above that were refused
)
READERS = dict(bounce_interval=(whole(1, 7 * 86400), DEFAULTS["bounce_interval"], False))


def apply(s: Storage, get: Callable[[str], Any]) -> None:
    """``[outbox] bounce_*`` onto ``s``; an interval that is not a whole
    number of seconds keeps its default and is reported (``findings``)."""
    s.bounce_address = optional_text(get("outbox.bounce_address"))
    s.bounce_mailbox = optional_text(get("outbox.bounce_mailbox"))
    s.bounce_interval, problem = read_raw("bounce_interval", get("outbox.bounce_interval"))
    s.bounce_errors = [problem] if problem else []


def summary(s: Storage) -> str:
    """The bounce settings in words, without the mailbox password."""
    if not (s.bounce_address or s.bounce_mailbox):
        return "off (no bounce_address, no bounce_mailbox)"
    return "return path %s; reports read from %s every %d s" % (
        "%s (+TOKEN)" % s.bounce_address if returnpath.usable(s.bounce_address) else "the sender",
        mailboxes.label(s.bounce_mailbox) if s.bounce_mailbox else "(no mailbox)",
        s.bounce_interval,
    )


def findings(s: Storage) -> list[Finding]:
    """(setting, advice, False) for the bounce settings: never blocking."""
    out = [p.finding() for p in s.get("bounce_errors") or ()]
    if s.bounce_address and not returnpath.usable(s.bounce_address):
        out.append(
            (
                "[outbox] bounce_address",
                "bounce_address %r is not an address "
                "whose local part leaves room for a TOKEN (at most %d characters "
                "before the @); mail keeps the sender as its return path"
                % (s.bounce_address, returnpath.MAX_LOCAL - 32),
                False,
            )
        )
    if s.bounce_mailbox:
        try:
            mailboxes.parse(s.bounce_mailbox)
        except ValueError as e:
            out.append(("[outbox] bounce_mailbox", str(e), False))
    elif s.bounce_address and returnpath.usable(s.bounce_address):
        out.append(
            (
                "[outbox] bounce_mailbox",
                "bounce_address is set but no "
                "bounce_mailbox: reports reach %s and nobody reads them" % s.bounce_address,
                False,
            )
        )
    return out


def mailbox_password(settings: Storage) -> str:
    """The bounce mailbox password: scrub() masks it in every shown text."""
    return mailboxes.password(settings.bounce_mailbox)


register(
    Part(
        name="bounces",
        defaults=DEFAULTS,
        readers=READERS,
        keys=("bounce_address", "bounce_mailbox", "bounce_interval"),
        apply=apply,
        findings=findings,
        secret=mailbox_password,
    )
)
