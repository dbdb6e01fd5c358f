"""What the account flows use of web2py's Auth, declared for the type checker.

The flows are mixins put before ``Auth`` (or Sahana's ``AuthS3``) in a
class's bases, and gluon has no type information: the Auth attributes and
methods they use are declared here, once, and so are the attributes
``configure_outbox`` sets and what one flow's mixin calls of another's.
Nothing is defined at run time, so every ``super()`` call of a mixin still
reaches Auth's own method.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..delivery.store import DAL, OutboxStore, Row, Table
from .flowlimit import FlowLimiter

# gluon's forms (FORM, SQLFORM) and Storage settings: no type information.
Form = Any


class Mailer(Protocol):
    """The outbox's ``MailS3`` as the flows use it (accounts/ may not import
    mailer.py, which sits above it)."""

    store: OutboxStore
    settings: Any  # Mail.settings, a Storage
    error: str | None
    result: dict[str, Any]

    def send(self, *args: Any, **kwargs: Any) -> bool: ...


class AuthBase:
    """web2py's Auth as the flows see it."""

    settings: Any  # Auth.settings, a Storage
    messages: Any  # Auth.messages, translated texts
    db: DAL
    user: Row | None
    csrf_prevention: bool
    # Set by OutboxAuthMixin.configure_outbox and configure_flows.
    outbox_mail: Mailer | None
    outbox_public_url: str | None
    outbox_approvers: Sequence[str]
    flow_limiter: FlowLimiter | None

    if TYPE_CHECKING:

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...
        def __call__(self) -> object: ...
        def url(
            self, f: str | None = None, args: Any = None, vars: Any = None, scheme: Any = False
        ) -> str: ...
        def register(self, *args: Any, **kwargs: Any) -> object: ...
        def profile(self, *args: Any, **kwargs: Any) -> object: ...
        def table_user(self) -> Table: ...
        def table_membership(self) -> Table: ...
        def id_group(self, role: str) -> int | None: ...
        def has_membership(
            self,
            group_id: int | None = None,
            user_id: int | None = None,
            role: str | None = None,
            cached: bool = False,
        ) -> bool: ...
        def email_reset_password(self, user: Row) -> bool: ...
        def log_event(
            self, description: object, vars: object = None, origin: str = "auth"
        ) -> None: ...
        def get_vars_next(self) -> str | None: ...
        def reset_password(self, *args: Any, **kwargs: Any) -> object: ...

        # Sahana Eden's AuthS3 (edenguard.py puts the flows before it).
        def s3_verify_user(self, user: Row) -> object: ...

        # What the flows use of each other (their mixins define it).
        def link(
            self,
            c: str,
            f: str,
            args: Sequence[object] | None = None,
            vars: dict[str, object] | None = None,
        ) -> str: ...
        def notify_approvers(self, user: Row) -> int: ...
        def _take_units(self, limits: list[tuple[str, str, int]], quiet: bool = False) -> bool: ...
        def _client(self) -> str: ...
        def _flow_setting(self, key: str) -> int: ...
