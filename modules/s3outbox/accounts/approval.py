"""Approval: approvers are told of a pending registration, and the person
of the decision.

With Auth's ``registration_requires_approval`` a new account waits with the
registration key ``pending`` until someone lets it in; web2py leaves the
approvers to find it. Here the approvers (``auth.approver``: addresses, or
``group:NAME`` for that group's active members) get a mail with a link to
the registration as soon as it is pending, the ``approve`` page lets them
(and admins) approve or reject it, and an approved person is told by mail.
Every mail goes to a raw address: an approver may have no person entity.
"""

import logging
from collections.abc import Sequence

from gluon import current
from gluon.html import FORM, INPUT, URL
from gluon.http import redirect

from ..delivery.store import PRIORITY_HIGH, Row
from .authbase import AuthBase
from .flowmail import FlowMailer
from .mailtext import render_values

logger = logging.getLogger("s3outbox")

ADMIN_ROLE = "admin"
PENDING = "pending"

MESSAGES = dict(
    approval_subject="Registration waiting for approval: %(email)s",
    # The link comes first, the values the person typed after their labels.
    approval_body="A registration is waiting for approval.\n\n"
    "Approve or reject: %(link)s\n\n"
    "Name: %(first_name)s %(last_name)s\nEmail: %(email)s\n",
    approved_subject="Your account is approved",
    approved_body="Welcome %(first_name)s! Your account is approved. Log in at %(link)s\n",
    approved_flash="Approved: %(email)s",
    rejected_flash="Rejected: %(email)s",
    not_pending="This registration is not waiting for approval",
)


class ApprovalMixin(AuthBase):
    """Who approves, the mail they get, and the ``approve`` page."""

    outbox_approvers: Sequence[str] = ()

    def approver_addresses(self) -> list[str]:
        """Raw addresses from ``auth.approver``: addresses and group:NAME."""
        found: list[str] = []
        db, users = self.db, self.table_user()
        for item in self.outbox_approvers:
            if item.lower().startswith("group:"):
                group_id = self.id_group(item[6:].strip())
                if not group_id:
                    logger.warning("approver %s: no such group", item)
                    continue
                m = self.table_membership()
                rows = db(
                    (m.group_id == group_id)
                    & (m.user_id == users.id)
                    & ((users.registration_key == "") | (users.registration_key == None))  # noqa: E711
                ).select(users.email)
                found.extend(r.email for r in rows)
            else:
                found.append(item)
        seen: set[str] = set()
        out: list[str] = []
        for address in found:
            if address and address.lower() not in seen:
                seen.add(address.lower())
                out.append(address)
        return out

    def notify_approvers(self, user: Row) -> int:
        """Queue one mail per approver with a link to the pending registration."""
        addresses = self.approver_addresses()
        if not addresses:
            logger.error(
                "registration %s waits for approval but no approver is "
                "configured ([auth] approver)",
                user.email,
            )
            return 0
        if self.outbox_mail is None:  # found by mypy: this raised, undoing the registration
            logger.error("registration %s waits for approval but Auth has no mailer", user.email)
            return 0
        d = render_values(user, self.link(self.settings.controller, "approve", args=[user.id]))
        mail = FlowMailer(self.outbox_mail, "approve")
        queued = 0
        for address in addresses:
            if mail.send(
                to=address,
                subject=self.messages.approval_subject % d,
                message=self.messages.approval_body % d,
                priority=PRIORITY_HIGH,
            ):
                queued += 1
            else:
                logger.error("approval request to %s not queued: %s", address, mail.error)
        return queued

    def can_approve(self) -> bool:
        """Admins, members of an approver group, and approver addresses."""
        if not self.user:
            return False
        if self.has_membership(role=ADMIN_ROLE):
            return True
        for item in self.outbox_approvers:
            if item.lower().startswith("group:"):
                if self.has_membership(role=item[6:].strip()):
                    return True
            elif item.lower() == (self.user.email or "").lower():
                return True
        return False

    def approval(self) -> dict[str, object]:
        """The approve page: ``approve`` lists pending registrations,
        ``approve/ID`` shows one with Approve and Reject buttons."""
        request, session = current.request, current.session
        if not self.user:
            redirect(
                URL(
                    self.settings.controller,
                    self.settings.function,
                    args="login",
                    vars=dict(_next=URL(args=request.args)),
                )
            )
        if not self.can_approve():
            redirect(self.settings.on_failed_authorization)
        users = self.table_user()
        pending = self.db(users.registration_key == PENDING)
        if not request.args(0):
            return dict(pending=pending.select(orderby=users.id), user=None, form=None)
        user = pending(users.id == request.args(0, cast=int, default=0)).select().first()
        if user is None:
            session.flash = self.messages.not_pending
            redirect(URL(args=[]))
        form = FORM(
            INPUT(_type="submit", _name="decision", _value="approve", _class="button"),
            " ",
            INPUT(_type="submit", _name="decision", _value="reject"),
        )
        if form.accepts(request, session, formname="approve-%s" % user.id):
            who = dict(email=user.email)
            if request.post_vars.decision == "reject":
                user.update_record(registration_key="blocked")
                session.flash = self.messages.rejected_flash % who
            else:
                user.update_record(registration_key="")
                self.notify_approved(user)
                session.flash = self.messages.approved_flash % who
            redirect(URL(args=[]))
        return dict(pending=None, user=user, form=form)

    def notify_approved(self, user: Row) -> None:
        if self.outbox_mail is None:
            logger.error("approval notice to %s not sent: Auth has no mailer", user.email)
            return
        d = render_values(
            user, self.link(self.settings.controller, self.settings.function, args=["login"])
        )
        mail = FlowMailer(self.outbox_mail, "approve")
        if not mail.send(
            to=user.email,
            subject=self.messages.approved_subject,
            message=self.messages.approved_body % d,
            priority=PRIORITY_HIGH,
        ):
            logger.error("approval notice to %s not queued: %s", user.email, mail.error)
