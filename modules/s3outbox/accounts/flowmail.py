"""The mail of the account flows: marked, and counted against the limits.

Account mail carries live keys (reset, verification, the two-step code), so
every message an Auth page queues goes through ``FlowMailer``, which marks
it with its flow: the dashboard shows it redacted and retention.py scrubs it
after delivery. Account mail can also be used to flood someone's mailbox or
the site's server, so each flow takes units of the limits (flowlimit.py)
before it queues: ``_take_units`` takes one unit of each limit or none, and
logs the limit that was used up. The login page's only mail is the two-step
code; it has a limit of its own, so a person's logins never use up the
account mails of their address or network.
"""

import logging
from collections.abc import Callable
from typing import Any

from gluon import current

from . import retention
from .authbase import AuthBase, Mailer
from .flowlimit import client_key

logger = logging.getLogger("s3outbox")

MESSAGES = dict(
    code_limited="Too many login codes were sent to this address just now; no new "
    "one was sent. Please try again in an hour.",
)
# The log line for each limit used up (no address: logs are kept).
_LIMIT_LOG = dict(
    client="account mail limit reached: flow_per_client (the requests of client "
    "network %(client)s) is used up; nothing queued",
    address="account mail limit reached: flow_per_address (the mails of this flow "
    "to one address) is used up; nothing queued",
    site="account mail limit reached: flow_global (the site's reset and username "
    "mails) is used up; nothing queued",
    register="account mail limit reached: flow_global_register (the site's "
    "registrations) is used up; nothing queued",
    code="login code limit reached: flow_codes_per_address (the codes to one "
    "address) is used up; nothing queued",
)


def address_key(address: object) -> str:
    """An address as the limits count it: one counter whatever its case."""
    return str(address or "").strip().lower()


class FlowMailer:
    """Stands in for the mailer during an account flow: every message it
    queues is marked with the flow (retention.py redacts and scrubs it).
    ``allowed(address)``, when given, may refuse a message before it is
    queued (a limit spent)."""

    def __init__(
        self, mailer: Mailer, flow: str, allowed: Callable[[object], bool] | None = None
    ) -> None:
        self._mailer, self._flow, self._allowed = mailer, flow, allowed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mailer, name)

    def send(self, *args: Any, **kwargs: Any) -> bool:
        if self._allowed is not None and not self._allowed(kwargs.get("to")):
            self._mailer.error = "account mail limit reached"
            return False
        if not self._mailer.send(*args, **kwargs):
            return False
        retention.mark(self._mailer.store, self._mailer.result["id"], self._flow)
        return True


class FlowMailMixin(AuthBase):
    """Auth's pages with their mail marked, and the limits' units."""

    def __call__(self) -> object:
        """Auth's pages; mail queued by them is marked as account mail."""
        mailer, outbox = self.settings.mailer, self.outbox_mail
        if outbox is not None and mailer is outbox:
            flow = current.request.args(0)
            # The only mail of login is the two-step code (web2py's Auth).
            allowed = self._code_allowed if flow == "login" else None
            self.settings.mailer = FlowMailer(outbox, flow, allowed)
        try:
            return super().__call__()
        finally:
            self.settings.mailer = mailer

    def _code_allowed(self, address: object) -> bool:
        """A two-step login code goes out only ``flow_codes_per_address``
        times a window to one address: whoever knows a password cannot flood
        its owner's mailbox with codes. Its own counter: a person's logins
        must not use up the account mails of their address or network."""
        if self.flow_limiter is None:
            return True
        allowed = self._take_units(
            [("code", address_key(address), self._flow_setting("flow_codes_per_address"))]
        )
        if not allowed:
            current.response.flash = self.messages.code_limited
        return allowed

    def _take_units(self, limits: list[tuple[str, str, int]], quiet: bool = False) -> bool:
        """One unit of each limit in this window, or none and the limit that
        was used up logged (unless ``quiet``: a decoy's)."""
        if self.flow_limiter is None:  # no limits without the outbox's mailer
            return True
        spent = self.flow_limiter.spent(limits, self._flow_setting("flow_window"))
        if spent and not quiet:
            logger.warning(_LIMIT_LOG[spent], dict(client=self._client()))
        return spent is None

    def _client(self) -> str:
        return client_key(current.request.env, bool(self._flow_setting("flow_trust_forwarded")))

    def _flow_setting(self, key: str) -> int:
        assert self.outbox_mail is not None  # asked only while the limits are on
        return self.outbox_mail.settings[key]
