"""Auth glue: web2py's account flows, sending through the outbox.

``OutboxAuth`` is ``gluon.tools.Auth`` with ``OutboxAuthMixin`` in front (mix
it into Sahana's ``AuthS3`` the same way). What it changes, and why:

- registration is never undone because of mail: when ``mailer.send`` says
  False, web2py deletes the new user and shows "Unable to send email"; here
  the user is kept, the failure is logged for the admin, and the person sees
  the normal "check your email" message;
- an address the outbox could never deliver to is refused by the form, so the
  person can correct it while still on the page;
- password reset and username recovery answer the same for unknown and known
  accounts (web2py says "Invalid email", which tells anyone who has an account);
- approval: approvers (addresses, or ``group:NAME`` for that group's members)
  get a mail with a link to the pending registration when it is ready; the
  ``approve`` page lets them approve or reject, and the person is told;
- links in mail use the site's public address when one is configured, else
  a Host header parsed strictly and matched exactly (hostnames.py);
- account-flow mail is rate limited through the database (flowlimit.py): over
  a limit, reset and username recovery give the same answer and queue
  nothing, registration is refused with a sentence;
- reset and username recovery do the same work for every address: what is
  not sent is still built and queued, in a savepoint that is rolled back;
- names cannot forge lines in a mail, and web2py's translator cannot rewrite
  ``%``, ``{`` or ``}`` in a form's values (it edits the dict it is given);
- account-flow mail is marked so that it is shown redacted and scrubbed
  after delivery (retention.py);
- an admin (see admins.first_user_admin) needs no approval.

Everything is queued with ``mail.send`` to raw addresses (no ``pe_id``): a new
registrant or an approver may have no person entity.
"""

import contextlib
import copyreg
import logging
import re
import time
import unicodedata

from gluon import current
from gluon.html import FORM, INPUT, URL
from gluon.http import HTTP, redirect
from gluon.languages import lazyT, pickle_lazyT
from gluon.sqlhtml import SQLFORM
from gluon.tools import DEFAULT, Auth, addrow, callback
from gluon.validators import IS_EMAIL, IS_LOWER, IS_NOT_EMPTY
from pydal import Field
from pydal.objects import Row

from ..delivery.message import ADDRESS_RE
from ..delivery.store import PRIORITY_HIGH
from . import retention
from .flowlimit import FlowLimiter, client_key
from .hostnames import LOOPBACK_NAMES, HostNames, parse
from .requestcheck import refuse

logger = logging.getLogger("s3outbox")

ADMIN_ROLE = "admin"
PENDING = "pending"

MESSAGES = dict(
    # One answer whether or not the account exists.
    reset_password_requested="If an account matches what you entered, we have sent "
    "it a link to reset the password. Please check your email.",
    username_requested="If an account uses this address, we have sent it the "
    "username. Please check your email.",
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
    flow_limited="Too many account requests from your network or for this "
    "address just now. Please try again in an hour.",
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
# Form fields whose values are names that end up in mail text.
NAME_FIELDS = ("first_name", "last_name")
# Control, format (bidi overrides, zero-width), line and paragraph separators,
# surrogates, private use, unassigned.
_STRIP_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
_SPACES = re.compile(r"\s+")


def clean_name(value):
    """A name on one line: control and separator characters become spaces."""
    if value is None:
        return value
    text = "".join(" " if unicodedata.category(c) in _STRIP_CATEGORIES else c for c in str(value))
    return _SPACES.sub(" ", text).strip()


def as_list(value):
    """AppConfig gives a str, a number, or a ``map`` for "a, b"; make a list."""
    if value in (None, "", False):
        return []
    if isinstance(value, str):
        value = value.split(",")
    elif not isinstance(value, (list, tuple)):
        value = list(value) if hasattr(value, "__iter__") else [value]
    return [str(v).strip() for v in value if str(v).strip()]


def public_link(public_url, path):
    """``path`` (from URL()) on the configured public address, e.g.
    ``https://eden.example.net`` or ``https://example.net/prefix``; a bare
    host name means https."""
    if "://" not in public_url:
        public_url = "https://" + public_url
    return public_url.rstrip("/") + path


class _SafeLazyT(lazyT):
    """A translation whose ``%`` works on a copy: web2py's translator escapes
    ``%``, ``{`` and ``}`` in place in the dict it is given, and Auth passes
    ``form.vars`` itself, so ``a%b@x.net`` became ``a\x1db@x.net`` before
    the verification mail was addressed."""

    def __mod__(self, symbols):
        # A pydal Row too (Eden's verify_email logs ``message % user``): the
        # translator takes anything but a dict as positional values.
        if isinstance(symbols, (dict, Row)):
            symbols = dict(symbols)
        return lazyT.__mod__(self, symbols)


# Pickled as a lazyT is (a session keeps its flash): as the text it shows.
copyreg.pickle(_SafeLazyT, pickle_lazyT)


class _SafeT:
    """Wraps a translator so the messages it makes are ``_SafeLazyT``."""

    def __init__(self, T):
        self._T = T

    def __call__(self, *args, **kwargs):
        value = self._T(*args, **kwargs)
        if isinstance(value, lazyT):  # lazyT(value) would be a copy, which drops %
            return _SafeLazyT(value.m, value.s, value.T, value.f, value.t, value.M)
        return value

    def __getattr__(self, name):
        return getattr(self._T, name)


class _FlowMailer:
    """Stands in for the mailer during an account flow: every message it
    queues is marked with the flow (retention.py redacts and scrubs it).
    ``allowed(address)``, when given, may refuse a message before it is
    queued (a limit spent)."""

    def __init__(self, mailer, flow, allowed=None):
        self._mailer, self._flow, self._allowed = mailer, flow, allowed

    def __getattr__(self, name):
        return getattr(self._mailer, name)

    def send(self, *args, **kwargs):
        if self._allowed is not None and not self._allowed(kwargs.get("to")):
            self._mailer.error = "account mail limit reached"
            return False
        if not self._mailer.send(*args, **kwargs):
            return False
        retention.mark(self._mailer.store, self._mailer.result["id"], self._flow)
        return True


class _KeepRegistration:
    """Stands in for the mailer during ``register``: a False from ``send``
    must not make web2py roll the new user back."""

    def __init__(self, mailer):
        self._mailer = mailer

    def __getattr__(self, name):
        return getattr(self._mailer, name)

    def send(self, *args, **kwargs):
        if self._mailer.send(*args, **kwargs):
            return True
        logger.error(
            "registration kept, but its verification mail to %s was not queued: %s",
            kwargs.get("to"),
            self._mailer.error,
        )
        return True


class OutboxAuthMixin:
    """Put before ``Auth`` (or ``AuthS3``) in the bases; call
    ``configure_outbox(get)`` after ``define_tables``."""

    outbox_public_url = None
    outbox_approvers = ()

    def __init__(self, *args, **kwargs):
        """``public_url`` (keyword): with it, any well-formed Host is served
        when ``host_names`` is empty, since links do not use the Host."""
        self._init_public_url = kwargs.pop("public_url", None)
        super().__init__(*args, **kwargs)

    def select_host(self, host, host_names=None):
        """The request's Host, checked (hostnames.py): 400 if it is not
        ``host[:port]``, 403 if it is not a configured name. Without names,
        the loopback names, or any Host when ``public_url`` is set."""
        names = HostNames(host_names or ([] if self._init_public_url else LOOPBACK_NAMES))
        if not host:
            return names.default()
        if parse(host) is None:
            refuse(400, "Bad Host header: it must be host or host:port.")
        if not names.names:
            return host
        checked = names.match(host)
        if checked is None:
            refuse(403, "Invalid Hostname: this site does not answer to %s." % host)
        return checked

    def configure_outbox(self, get):
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
        s.register_onvalidation = _as_callbacks(s.register_onvalidation) + [
            self._check_deliverable
        ]
        s.profile_onvalidation = _as_callbacks(s.profile_onvalidation) + [self._check_values]
        s.register_onaccept = _as_callbacks(s.register_onaccept) + [self._after_register]
        s.verify_email_onaccept = _as_callbacks(s.verify_email_onaccept) + [self._after_verify]

    def configure_flows(self):
        """The answers, the translator, the mailer and the limits of the
        account flows (Sahana Eden's glue, edenauth.py, calls this alone:
        Eden's own flows do the rest)."""
        self.messages.lock_keys = False
        for key, text in MESSAGES.items():
            self.messages[key] = text
        if not isinstance(self.messages.T, _SafeT):
            self.messages.T = _SafeT(self.messages.T)
        self.messages.lock_keys = True
        self.outbox_mail = self.settings.mailer
        self.flow_limiter = None
        if self.outbox_mail:
            # Its table is defined with the store (tables.py), never later:
            # inside a savepoint a migration would commit and end it.
            self.flow_limiter = FlowLimiter(self.outbox_mail.store)

    # --------------------------------------------------------------- links
    def url(self, f=None, args=None, vars=None, scheme=False):
        """Auth's links; absolute ones (those that go in mail) use public_url."""
        if scheme and self.outbox_public_url:
            return public_link(
                self.outbox_public_url,
                URL(c=self.settings.controller, f=f, args=args or [], vars=vars or {}),
            )
        return super().url(f=f, args=args, vars=vars, scheme=scheme)

    def link(self, c, f, args=None, vars=None):
        """An absolute link for a mail body: public_url, else this request's host."""
        if self.outbox_public_url:
            return public_link(
                self.outbox_public_url, URL(c=c, f=f, args=args or [], vars=vars or {})
            )
        return URL(
            c=c, f=f, args=args or [], vars=vars or {}, scheme=True, host=self.settings.host
        )  # checked by select_host

    # ------------------------------------------------------ account flows
    def __call__(self):
        """Auth's pages; mail queued by them is marked as account mail."""
        mailer = self.settings.mailer
        if mailer and self.outbox_mail is mailer:
            flow = current.request.args(0)
            # The only mail of login is the two-step code (web2py's Auth).
            allowed = self._code_allowed if flow == "login" else None
            self.settings.mailer = _FlowMailer(mailer, flow, allowed)
        try:
            return super().__call__()
        finally:
            self.settings.mailer = mailer

    def _savepoint(self, keep):
        """A savepoint of the outbox's transaction (see store.savepoint): a
        decoy's mail and log entry are rolled back, a real one's kept."""
        if self.outbox_mail:
            return self.outbox_mail.store.savepoint(keep)
        return contextlib.nullcontext()

    def _flow_setting(self, key):
        return self.outbox_mail.settings[key]

    def flow_allowed(self, address):
        """Registration: one unit of this network's requests, of the
        address's registration mails and of the site's registrations; False
        (nothing taken) when one is spent."""
        if self.flow_limiter is None:
            return True
        get = self._flow_setting
        return self._take_units(
            [
                ("client", self._client(), get("flow_per_client")),
                ("address", "register:" + _address_key(address), get("flow_per_address")),
                ("register", "", get("flow_global_register")),
            ]
        )

    def _flow_mail(self, flow, address, known, queue):
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
                            "%s:%s" % (flow, _address_key(address)),
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

    def _client(self):
        return client_key(current.request.env, self._flow_setting("flow_trust_forwarded"))

    def _code_allowed(self, address):
        """A two-step login code goes out only ``flow_codes_per_address``
        times a window to one address: whoever knows a password cannot flood
        its owner's mailbox with codes. Its own counter: a person's logins
        must not use up the account mails of their address or network."""
        if self.flow_limiter is None:
            return True
        allowed = self._take_units(
            [("code", _address_key(address), self._flow_setting("flow_codes_per_address"))]
        )
        if not allowed:
            current.response.flash = self.messages.code_limited
        return allowed

    def _take_units(self, limits, quiet=False):
        """One unit of each limit in this window, or none and the limit that
        was used up logged (unless ``quiet``: a decoy's)."""
        spent = self.flow_limiter.spent(limits, self._flow_setting("flow_window"))
        if spent and not quiet:
            logger.warning(_LIMIT_LOG[spent], dict(client=self._client()))
        return spent is None

    # -------------------------------------------------------- registration
    def register(self, *args, **kwargs):
        mailer = self.settings.mailer
        if mailer:
            self.settings.mailer = _KeepRegistration(mailer)
        try:
            return super().register(*args, **kwargs)
        finally:
            self.settings.mailer = mailer

    def profile(self, *args, **kwargs):
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

    def _check_deliverable(self, form):
        """Names on one line; an address the outbox can deliver to; and the
        account-flow limits, checked last so a refused form takes nothing."""
        self._check_values(form)
        if not form.errors and not self.flow_allowed(form.vars.get("email")):
            form.errors.email = self.messages.flow_limited

    def _check_values(self, form):
        """Names on one line and an address the outbox can deliver to (registration
        and profile edits)."""
        for name in NAME_FIELDS:
            if form.vars.get(name) is not None:
                form.vars[name] = clean_name(form.vars[name])
        email = form.vars.get("email")
        if email and not ADDRESS_RE.match(email):
            form.errors.email = self.messages.invalid_email

    def _after_register(self, form):
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

    def _after_verify(self, user):
        """Verified and waiting for approval: tell the approvers (an admin
        made by first_user_admin is approved at once)."""
        if user.registration_key != PENDING:
            return
        if self.has_membership(user_id=user.id, role=ADMIN_ROLE):
            user.update_record(registration_key="")
            current.session.flash = self.messages.email_verified
        else:
            self.notify_approvers(user)

    # ------------------------------------------------------------ approval
    def approver_addresses(self):
        """Raw addresses from ``auth.approver``: addresses and group:NAME."""
        found = []
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
        seen, out = set(), []
        for address in found:
            if address and address.lower() not in seen:
                seen.add(address.lower())
                out.append(address)
        return out

    def notify_approvers(self, user):
        """Queue one mail per approver with a link to the pending registration."""
        mail = self.settings.mailer
        addresses = self.approver_addresses()
        if not addresses:
            logger.error(
                "registration %s waits for approval but no approver is "
                "configured ([auth] approver)",
                user.email,
            )
            return 0
        d = _render_values(user, self.link(self.settings.controller, "approve", args=[user.id]))
        mail = _FlowMailer(self.outbox_mail, "approve")
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

    def can_approve(self):
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

    def approval(self):
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

    def notify_approved(self, user):
        d = _render_values(
            user, self.link(self.settings.controller, self.settings.function, args=["login"])
        )
        mail = _FlowMailer(self.outbox_mail, "approve")
        if not mail.send(
            to=user.email,
            subject=self.messages.approved_subject,
            message=self.messages.approved_body % d,
            priority=PRIORITY_HIGH,
        ):
            logger.error("approval notice to %s not queued: %s", user.email, mail.error)

    # ------------------------------------------------- no account enumeration
    def request_reset_password(
        self, next=DEFAULT, onvalidation=DEFAULT, onaccept=DEFAULT, log=DEFAULT
    ):
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

    def _reset_one(self, users, field, value, log):
        """The work of one reset request: a real mail, or a decoy's."""
        user = users(**{field: value})
        why = self._reset_refusal(user, field)
        if why:
            logger.info("password reset: %s; nothing sent", why)
        decoy = self._decoy(users, field, value)

        def queue(real):
            target = user if real else decoy
            if not self.email_reset_password(target) and real:
                logger.error("password reset mail not queued: %s", self.settings.mailer.error)
            self.log_event(log, target)

        self._flow_mail("reset", user.email if user else value, why is None, queue)

    def _reset_refusal(self, user, field):
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

    def _decoy(self, users, field, value):
        """A stand-in user for work that will be rolled back: the same
        fields, id 0 (its UPDATE matches no row), the address as typed."""
        decoy = Row(dict((name, None) for name in users.fields))
        decoy.update(id=0, registration_key="", first_name="", last_name="")
        decoy[field] = value
        if field != "email":
            decoy.email = "nobody@outbox.invalid"
        decoy.update_record = lambda **values: self.db(users.id == 0).update(**values)
        return decoy

    def retrieve_username(self, next=DEFAULT, onvalidation=DEFAULT, onaccept=DEFAULT, log=DEFAULT):
        """Mail the username(s) of an address; the same answer and work either way."""
        users = self.table_user()
        s = self.settings
        if "username" not in users.fields:
            raise HTTP(404)
        requires = [IS_EMAIL(error_message=self.messages.invalid_email)]
        if not s.email_case_sensitive:
            requires.insert(0, IS_LOWER())
        log = _given(log, self.messages["retrieve_username_log"])

        def act(email):
            rows = self.db(users.email == email).select()
            if not rows:
                logger.info("username asked for an unknown address; nothing sent")
            names = ", ".join(r.username for r in rows) if rows else "x" * 12
            decoy = self._decoy(users, "email", email)

            def queue(real):
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

    def _same_answer(
        self, formname, field, act, answer, button, next, onvalidation, onaccept, captcha
    ):
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


def _address_key(address):
    """An address as the limits count it: one counter whatever its case."""
    return str(address or "").strip().lower()


def _render_values(user, link):
    """A user's fields for a mail template: names on one line, and the link."""
    values = dict(user.as_dict(), link=link)
    for name in NAME_FIELDS:
        values[name] = clean_name(values.get(name)) or ""
    return values


def _given(value, default):
    """Auth's convention: the DEFAULT marker means "use the setting"."""
    return default if value is DEFAULT else value


def _as_callbacks(value):
    if not value:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class OutboxAuth(OutboxAuthMixin, Auth):
    """web2py's Auth with every flow going through the outbox."""
