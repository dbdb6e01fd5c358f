"""Registration: kept when its mail cannot go out, checked while the person
is still on the form.

When ``mailer.send`` says False, web2py deletes the new user and shows
"Unable to send email"; here the user is kept, the failure is logged for the
admin, and the person sees the normal "check your email" message. The form
refuses what the outbox could never deliver to (the person can correct it
while on the page) and puts names on one line (mailtext.py), and the
registration limits are taken last, so a refused form takes nothing. An
admin needs no approval; anyone else waiting for approval has the approvers
told as soon as the registration is pending (approval.py): at once without
email verification, once verified with it.
"""

import logging
from typing import Any

from gluon import current

from ..delivery.message import ADDRESS_RE
from ..delivery.store import Row
from .approval import ADMIN_ROLE, PENDING
from .authbase import AuthBase, Form, Mailer
from .flowmail import address_key
from .mailtext import NAME_FIELDS, clean_name
from .requestcheck import refuse

logger = logging.getLogger("s3outbox")

MESSAGES = dict(
    flow_limited="Too many account requests from your network or for this "
    "address just now. Please try again in an hour.",
)


class KeepRegistration:
    """Stands in for the mailer during ``register``: a False from ``send``
    must not make web2py roll the new user back."""

    def __init__(self, mailer: Mailer) -> None:
        self._mailer = mailer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mailer, name)

    def send(self, *args: Any, **kwargs: Any) -> bool:
        if self._mailer.send(*args, **kwargs):
            return True
        logger.error(
            "registration kept, but its verification mail to %s was not queued: %s",
            kwargs.get("to"),
            self._mailer.error,
        )
        return True


class RegistrationMixin(AuthBase):
    """Registration and profile forms; ``configure_outbox`` hooks the
    ``_check_*`` and ``_after_*`` callbacks."""

    def register(self, *args: Any, **kwargs: Any) -> object:
        mailer = self.settings.mailer
        if mailer:
            self.settings.mailer = KeepRegistration(mailer)
        try:
            return super().register(*args, **kwargs)
        finally:
            self.settings.mailer = mailer

    def profile(self, *args: Any, **kwargs: Any) -> object:
        """web2py's profile; a post whose record id was changed or left out
        gets a 400 (SQLFORM raises SyntaxError, which was a ticket)."""
        try:
            return super().profile(*args, **kwargs)
        except SyntaxError as e:
            if "tampering" not in str(e):
                raise
            refuse(
                400, "The form's record id is missing or changed: reload the page and try again."
            )

    def flow_allowed(self, address: object) -> bool:
        """Registration: one unit of this network's requests, of the
        address's registration mails and of the site's registrations; False
        (nothing taken) when one is spent."""
        if self.flow_limiter is None:
            return True
        get = self._flow_setting
        return self._take_units(
            [
                ("client", self._client(), get("flow_per_client")),
                ("address", "register:" + address_key(address), get("flow_per_address")),
                ("register", "", get("flow_global_register")),
            ]
        )

    def _check_deliverable(self, form: Form) -> None:
        """Names on one line; an address the outbox can deliver to; and the
        account-flow limits, checked last so a refused form takes nothing."""
        self._check_values(form)
        if not form.errors and not self.flow_allowed(form.vars.get("email")):
            form.errors.email = self.messages.flow_limited

    def _check_values(self, form: Form) -> None:
        """Names on one line and an address the outbox can deliver to (registration
        and profile edits)."""
        for name in NAME_FIELDS:
            if form.vars.get(name) is not None:
                form.vars[name] = clean_name(form.vars[name])
        email = form.vars.get("email")
        if email and not ADDRESS_RE.match(email):
            form.errors.email = self.messages.invalid_email

    def _after_register(self, form: Form) -> None:
        """An admin (the first user, see admins.first_user_admin) needs no
        approval. Without verification the
        registration is pending now, so approvers are told now."""
        user = self.table_user()(form.vars.id)
        if user is None:
            return
        if self.has_membership(user_id=user.id, role=ADMIN_ROLE):
            if user.registration_key == PENDING:
                user.update_record(registration_key="")
                current.session.flash = self.messages.registration_successful
            return
        if user.registration_key == PENDING:
            self.notify_approvers(user)

    def _after_verify(self, user: Row) -> None:
        """Verified and waiting for approval: tell the approvers (an admin
        made by first_user_admin is approved at once)."""
        if user.registration_key != PENDING:
            return
        if self.has_membership(user_id=user.id, role=ADMIN_ROLE):
            user.update_record(registration_key="")
            current.session.flash = self.messages.email_verified
        else:
            self.notify_approvers(user)
