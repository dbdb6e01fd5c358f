"""web2py's Auth with its account flows sending through the outbox.

``OutboxAuth`` is ``gluon.tools.Auth`` with ``OutboxAuthMixin`` in front
(edenguard.py mixes it into Sahana's ``AuthS3`` the same way). The mixin is
one mixin per flow, each in its file with the reasons: links use the public
address or a checked Host (links.py); account mail is marked for redaction
and counted against the limits (flowmail.py); registration is never undone
because of mail (registration.py); approvers are told and decide on a page
(approval.py); reset and username recovery give one answer and do the same
work for known and unknown accounts (recovery.py); names and form values
reach mail text unchanged in meaning (mailtext.py). This file reads the
settings and hooks the flows. Everything is queued with ``mail.send`` to raw
addresses (no ``pe_id``): a new registrant or an approver may have no
person entity.
"""

from collections.abc import Callable

from gluon.tools import Auth

from . import approval, flowmail, recovery, registration
from .approval import ApprovalMixin
from .flowlimit import FlowLimiter
from .flowmail import FlowMailMixin
from .links import LinksMixin
from .mailtext import SafeT
from .recovery import RecoveryMixin
from .registration import RegistrationMixin

# Auth's messages added or changed by the flows.
MESSAGES = {
    **registration.MESSAGES,
    **approval.MESSAGES,
    **recovery.MESSAGES,
    **flowmail.MESSAGES,
}


def as_list(value: object) -> list[str]:
    """AppConfig gives a str, a number, or a ``map`` for "a, b"; make a list."""
    if value in (None, "", False):
        return []
    if isinstance(value, str):
        value = value.split(",")
    elif not isinstance(value, (list, tuple)):
        value = list(value) if hasattr(value, "__iter__") else [value]
    return [str(v).strip() for v in value if str(v).strip()]


# An Auth callback setting: None, one callable or a list of them.
Callback = Callable[..., object]
Callbacks = Callback | list[Callback] | tuple[Callback, ...] | None


def as_callbacks(value: Callbacks) -> list[Callback]:
    """An Auth callback setting (None, one callable or a list) as a list."""
    if not value:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class OutboxAuthMixin(LinksMixin, FlowMailMixin, RegistrationMixin, ApprovalMixin, RecoveryMixin):
    """Put before ``Auth`` (or ``AuthS3``) in the bases; call
    ``configure_outbox(get)`` after ``define_tables``."""

    def configure_outbox(self, get: Callable[[str], object]) -> None:
        """Read the settings (``get`` is ``AppConfig.get``) and hook the flows.

        Keys: app.public_url, auth.approver,
        auth.two_factor; verification/approval are Auth's own settings.
        """
        self.outbox_public_url = str(get("app.public_url") or "").strip() or None
        self.outbox_approvers = as_list(get("auth.approver"))
        if get("auth.two_factor"):
            self.settings.auth_two_factor_enabled = True
        self.configure_flows()
        s = self.settings
        s.register_onvalidation = as_callbacks(s.register_onvalidation) + [self._check_deliverable]
        s.profile_onvalidation = as_callbacks(s.profile_onvalidation) + [self._check_values]
        s.register_onaccept = as_callbacks(s.register_onaccept) + [self._after_register]
        s.verify_email_onaccept = as_callbacks(s.verify_email_onaccept) + [self._after_verify]

    def configure_flows(self) -> None:
        """The answers, the translator, the mailer and the limits of the
        account flows (Sahana Eden's glue, edenguard.py, calls this alone:
        Eden's own flows do the rest)."""
        self.messages.lock_keys = False
        for key, text in MESSAGES.items():
            self.messages[key] = text
        if not isinstance(self.messages.T, SafeT):
            self.messages.T = SafeT(self.messages.T)
        self.messages.lock_keys = True
        self.outbox_mail = self.settings.mailer
        self.flow_limiter = None
        if self.outbox_mail:
            # Its table is defined with the store (tables.py), never later:
            # inside a savepoint a migration would commit and end it.
            self.flow_limiter = FlowLimiter(self.outbox_mail.store)


class OutboxAuth(OutboxAuthMixin, Auth):
    """web2py's Auth with every flow going through the outbox."""
