"""Who is a site admin: the first user on an empty database (``[app]
first_user_admin``), and any user the command line's ``make-admin`` names.

These are Auth's groups and memberships; the admin pages only check them.
"""

import logging
from typing import Any, Protocol

from ..delivery.store import DAL, OutboxStore, Table, utcnow

logger = logging.getLogger("s3outbox")


class Auth(Protocol):
    """What this module uses of web2py's Auth (any Auth: OutboxAuth, Sahana
    Eden's AuthS3, or web2py's own)."""

    db: DAL

    def table_user(self) -> Table: ...
    def id_group(self, role: str) -> int | None: ...
    def add_group(self, role: str, description: str = "") -> int: ...
    def add_membership(
        self, group_id: int | None = None, user_id: int | None = None, role: str | None = None
    ) -> int | None: ...
    def has_membership(
        self,
        group_id: int | None = None,
        user_id: int | None = None,
        role: str | None = None,
        cached: bool = False,
    ) -> bool: ...


def first_user_admin(auth: Auth, role: str = "admin", store: OutboxStore | None = None) -> None:
    """Make the first user inserted on an empty user table a member of ``role``.

    Hooked on the table itself, so it holds for the registration form and for
    users created any other way; it runs in the inserting transaction.
    Registrations at the same instant each see only their own row; with
    ``store`` (the outbox's OutboxStore) the one whose transaction inserts
    the state row ``first_user_admin`` wins (a unique name: the others wait
    for it, then find it), so exactly one becomes admin.
    """
    table = auth.table_user()

    def promote(fields: dict[str, Any], user_id: int) -> None:
        if auth.db(table.id != user_id).select(table.id, limitby=(0, 1)):
            return
        if store is not None and not store.claim_name("first_user_admin", utcnow()):
            return
        auth.add_membership(ensure_group(auth, role), user_id)
        logger.info("first user %s is now a member of %r", fields.get("email"), role)

    table._after_insert.append(promote)


def ensure_group(auth: Auth, role: str = "admin") -> int:
    """The id of group ``role``, made when missing."""
    return auth.id_group(role) or auth.add_group(role, "Site administrators: the outbox dashboard")


def make_admin(auth: Auth, email: str, role: str = "admin") -> str:
    """Add the user with ``email`` to ``role``; return a sentence saying what."""
    table = auth.table_user()
    user = (
        auth.db(table.email.lower() == email.strip().lower()).select(table.id, table.email).first()
    )
    if user is None:
        raise LookupError("no user with e-mail %s; register first" % email)
    group_id = ensure_group(auth, role)
    if auth.has_membership(group_id, user.id):
        return "%s is already a member of %r" % (user.email, role)
    auth.add_membership(group_id, user.id)
    return "%s is now a member of %r" % (user.email, role)
