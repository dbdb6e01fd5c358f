"""Password reset and username recovery: one answer, and the same work,
for known and unknown accounts.

web2py answers "Invalid email" for an address it does not know, which tells
anyone whether someone has an account; the time a request takes can tell
it too. Here both pages give one answer whatever was typed, and do the same
work either way: for an account that gets no mail (unknown, blocked, a reset
link still pending, a limit spent) a decoy's mail is still built, queued and
logged, and its limit units taken, inside a savepoint that is rolled back.
Requests for unknown accounts spend nothing that real users or other
networks need, and no budget tells which accounts exist.
"""

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from gluon import current
from gluon.http import HTTP, redirect
from gluon.sqlhtml import SQLFORM
from gluon.tools import DEFAULT, addrow, callback
from gluon.validators import IS_EMAIL, IS_LOWER, IS_NOT_EMPTY
from pydal import Field
from pydal.objects import Row

from ..delivery.store import Table
from .approval import PENDING
from .authbase import AuthBase
from .flowmail import address_key

logger = logging.getLogger("s3outbox")

MESSAGES = dict(
    # One answer whether or not the account exists.
    reset_password_requested="If an account matches what you entered, we have sent "
    "it a link to reset the password. Please check your email.",
    username_requested="If an account uses this address, we have sent it the "
    "username. Please check your email.",
)


class RecoveryMixin(AuthBase):
    """``request_reset_password`` and ``retrieve_username`` without
    account enumeration."""

    def request_reset_password(
        self,
        next: str | None = DEFAULT,
        onvalidation: object = DEFAULT,
        onaccept: object = DEFAULT,
        log: object = DEFAULT,
    ) -> object:
        """Ask for a reset link; the same answer, and the same work, whether
        or not the account exists.

        Nothing about the account changes but its reset key (web2py keeps one
        key a user); the password stays until the link is followed. While a
        key is younger than ``flow_reset_pending`` no other is sent.
        """
        users = self.table_user()
        s = self.settings
        field = (
            "username"
            if "username" in users.fields and (s.login_userfield or "username") == "username"
            else "email"
        )
        if field == "username":
            requires = [IS_NOT_EMPTY(error_message=self.messages.invalid_username)]
        else:
            requires = [IS_EMAIL(error_message=self.messages.invalid_email)]
        if not (s.username_case_sensitive if field == "username" else s.email_case_sensitive):
            requires.insert(0, IS_LOWER())
        log = _given(log, self.messages["reset_password_log"])
        return self._same_answer(
            "reset_password",
            Field(field, label=users[field].label, requires=requires),
            lambda value: self._reset_one(users, field, value, log),
            self.messages.reset_password_requested,
            self.messages.password_reset_button,
            _given(next, self.get_vars_next() or s.request_reset_password_next),
            _given(onvalidation, s.request_reset_password_onvalidation),
            _given(onaccept, s.request_reset_password_onaccept),
            s.retrieve_password_captcha is not False
            and (s.retrieve_password_captcha or s.captcha),
        )

    def _reset_one(self, users: Table, field: str, value: str, log: object) -> None:
        """The work of one reset request: a real mail, or a decoy's."""
        user = users(**{field: value})
        why = self._reset_refusal(user, field)
        if why:
            logger.info("password reset: %s; nothing sent", why)
        decoy = self._decoy(users, field, value)

        def queue(real: bool) -> None:
            target = user if real else decoy
            if not self.email_reset_password(target) and real:
                logger.error("password reset mail not queued: %s", self.settings.mailer.error)
            self.log_event(log, target)

        self._flow_mail("reset", user.email if user else value, why is None, queue)

    def _reset_refusal(self, user: Row | None, field: str) -> str | None:
        """Why no reset mail goes to ``user``, or None when one may."""
        if user is None:
            return "unknown %s" % field
        if (user.registration_key or "").startswith(PENDING) or user.registration_key in (
            "disabled",
            "blocked",
        ):
            return "account %s cannot log in" % user.id
        issued = (user.reset_password_key or "").partition("-")[0]
        if issued.isdigit() and time.time() - int(issued) < self._flow_setting(
            "flow_reset_pending"
        ):
            return "account %s has a pending reset link" % user.id
        return None

    def _decoy(self, users: Table, field: str, value: str) -> Row:
        """A stand-in user for work that will be rolled back: the same
        fields, id 0 (its UPDATE matches no row), the address as typed."""
        decoy = Row(dict((name, None) for name in users.fields))
        decoy.update(id=0, registration_key="", first_name="", last_name="")
        decoy[field] = value
        if field != "email":
            decoy.email = "nobody@outbox.invalid"
        decoy.update_record = lambda **values: self.db(users.id == 0).update(**values)
        return decoy

    def retrieve_username(
        self,
        next: str | None = DEFAULT,
        onvalidation: object = DEFAULT,
        onaccept: object = DEFAULT,
        log: object = DEFAULT,
    ) -> object:
        """Mail the username(s) of an address; the same answer and work either way."""
        users = self.table_user()
        s = self.settings
        if "username" not in users.fields:
            raise HTTP(404)
        requires = [IS_EMAIL(error_message=self.messages.invalid_email)]
        if not s.email_case_sensitive:
            requires.insert(0, IS_LOWER())
        log = _given(log, self.messages["retrieve_username_log"])

        def act(email: str) -> None:
            rows = self.db(users.email == email).select()
            if not rows:
                logger.info("username asked for an unknown address; nothing sent")
            names = ", ".join(r.username for r in rows) if rows else "x" * 12
            decoy = self._decoy(users, "email", email)

            def queue(real: bool) -> None:
                if (
                    not s.mailer.send(
                        to=email,
                        subject=self.messages.retrieve_username_subject,
                        message=self.messages.retrieve_username % dict(username=names),
                    )
                    and real
                ):
                    logger.error("username mail not queued: %s", s.mailer.error)
                self.log_event(log, rows.first() if real else decoy)

            self._flow_mail("username", email, bool(rows), queue)

        return self._same_answer(
            "retrieve_username",
            Field("email", label=users.email.label, requires=requires),
            act,
            self.messages.username_requested,
            self.messages.submit_button,
            _given(next, self.get_vars_next() or s.retrieve_username_next),
            _given(onvalidation, s.retrieve_username_onvalidation),
            _given(onaccept, s.retrieve_username_onaccept),
            s.retrieve_username_captcha is not False
            and (s.retrieve_username_captcha or s.captcha),
        )

    def _flow_mail(
        self, flow: str, address: str, known: bool, queue: Callable[[bool], None]
    ) -> None:
        """Reset or username recovery: ``queue(real)`` queues the mail, real
        or a decoy that is rolled back, with the same work either way.

        Every request takes a unit of its network's requests. Only a real mail
        takes units of the address's mails of this flow and of the site's
        account mails: requests for unknown accounts spend nothing that real
        users or other networks need. For a decoy the same units are taken
        and rolled back, so no budget tells which accounts exist."""
        if self.flow_limiter is None:
            with self._savepoint(keep=known):
                return queue(known)
        get = self._flow_setting
        real = self._take_units([("client", self._client(), get("flow_per_client"))]) and known
        with self._savepoint(keep=real):
            real = (
                self._take_units(
                    [
                        (
                            "address",
                            "%s:%s" % (flow, address_key(address)),
                            get("flow_per_address"),
                        ),
                        ("site", "", get("flow_global")),
                    ],
                    quiet=not real,
                )
                and real
            )
            with self._savepoint(keep=real):
                queue(real)

    def _savepoint(self, keep: bool) -> contextlib.AbstractContextManager[None]:
        """A savepoint of the outbox's transaction (see store.savepoint): a
        decoy's mail and log entry are rolled back, a real one's kept."""
        if self.outbox_mail:
            return self.outbox_mail.store.savepoint(keep)
        return contextlib.nullcontext()

    def _same_answer(
        self,
        formname: str,
        field: Any,
        act: Callable[[str], None],
        answer: object,
        button: object,
        next: str | None,
        onvalidation: object,
        onaccept: object,
        captcha: Any,
    ) -> object:
        """A one-field form whose answer never depends on the account:
        ``act(value)`` does the flow's work (real or rolled back)."""
        request, session = current.request, current.session
        if not self.settings.mailer:
            current.response.flash = self.messages.function_disabled
            return ""
        form = SQLFORM.factory(
            field,
            submit_button=button,
            hidden=dict(_next=next),
            formstyle=self.settings.formstyle,
            separator=self.settings.label_separator,
            table_name="auth_" + formname,
        )
        if captcha:
            addrow(
                form,
                captcha.label,
                captcha,
                captcha.comment,
                self.settings.formstyle,
                "captcha__row",
            )
        if form.accepts(
            request,
            session if self.csrf_prevention else None,
            formname=formname,
            onvalidation=onvalidation,
            hideerror=self.settings.hideerror,
        ):
            act(form.vars[field.name])
            callback(onaccept, form)
            session.flash = answer
            redirect(next or self.url(args=request.args), client_side=self.settings.client_side)
        return form


T = TypeVar("T")


def _given(value: T, default: T) -> T:
    """Auth's convention: the DEFAULT marker means "use the setting"."""
    return default if value is DEFAULT else value
