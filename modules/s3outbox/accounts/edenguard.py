"""Sahana Eden's own account flows, protected as the app's are.

scripts/eden_install.py adds ``guard(auth, mail)`` to Eden's models/00_db.py,
right after Eden makes its ``AuthS3``. For every request it then:

- checks the Host before Eden builds a link from it: Eden's shipped
  configuration has no ``settings.base.public_url``, and Eden then takes the
  request's Host for every link it mails (reset, verification, the "approve
  this user" mail). With a public URL any well-formed Host is served; without
  one only the names in ``settings.base.host_names`` (the loopback names when
  empty), matched exactly (hostnames.py); anything else gets a 403 that says
  what to set. The checked host becomes this request's public URL, so every
  link Eden makes (mail, sync, OAuth) uses it;
- refuses control characters in any parameter (a NUL in a name was a ticket
  on PostgreSQL); on the account pages (default/user) also a repeated field
  or one given both in the query and in the body, and adds the headers that
  forbid framing. Eden's other forms repeat fields on purpose (checkboxes,
  multi-selects) and some pages are meant to be embedded, so those two stay
  on the account pages;
- gives Eden's ``AuthS3`` the app's account-flow behaviour (auth.py):
  reset and username recovery answer and work the same for known and unknown
  addresses, registration and both of those take the account-mail limits
  (flowlimit.py), names reach no mail with a line break, and account mail is
  marked for redaction (retention.py). Eden's own code is not changed: the
  instance's class becomes a subclass with ``EdenAuthMixin`` in front.
"""

from typing import Any

from gluon import current, redirect
from gluon.tools import DEFAULT

from ..delivery.store import Row
from .auth import Callbacks, OutboxAuthMixin, as_callbacks, as_list
from .authbase import AuthBase, Mailer
from .flowmail import FlowMailer
from .gluon_internals import reset_password_key
from .hostnames import LOOPBACK_NAMES, HostNames, parse
from .mailtext import NAME_FIELDS, clean_name
from .requestcheck import FRAME_HEADERS, check_request, refuse

CONFIG = "models/000_config.py"
# Eden's registration may offer these as checkboxes: they repeat.
ACCOUNT_MULTI = ("link_user_to",)
# Eden's forms post back to their URL, ?_next=... included, with a hidden _next.
BOTH_PLACES = ("_next",)
_CLASSES: dict[type, type] = {}  # Eden's Auth class -> the same with EdenAuthMixin in front
# Sahana Eden's AuthS3 and deployment settings: no type information.
AuthS3 = Any
DeploymentSettings = Any


def guard(auth: AuthS3, mail: Mailer) -> None:
    """Check this request (Host, parameters) and protect ``auth``'s flows."""
    request, settings = current.request, current.deployment_settings
    check_host(settings, request.env)
    account_page = request.controller == "default" and request.function == "user"
    if account_page:
        current.response.headers.update(FRAME_HEADERS)
        check_request(request, multi=ACCOUNT_MULTI)
        for name in set(request.get_vars) & set(request.post_vars):
            if name not in BOTH_PLACES:
                refuse(400, "The field %s was given more than once." % name[:40])
    else:
        check_request(request, multi=True)
    protect(auth, mail)


def check_host(settings: DeploymentSettings, env: Any) -> None:
    """The strict Host rule (hostnames.py) on an Eden request; sets the
    request's ``settings.base.public_url`` to the checked host when the admin
    set none. A request without Host (scheduler, shell) is left to Eden."""
    host = env.get("http_host")
    if not host:
        return
    if parse(host) is None:
        refuse(400, "Bad Host header: it must be host or host:port.")
    if settings.base.get("public_url"):
        return  # links use it, whatever the Host
    names = HostNames(as_list(settings.base.get("host_names")) or LOOPBACK_NAMES)
    checked = names.match(host)
    if checked is None:
        refuse(
            403,
            "Invalid Hostname: this site does not answer to %s. Its "
            "administrator sets settings.base.public_url (or lists the "
            "site's names in settings.base.host_names) in %s." % (host, CONFIG),
        )
    scheme = (env.get("wsgi_url_scheme") or "http").lower()
    settings.base.public_url = "%s://%s" % (scheme, checked)


def protect(auth: AuthS3, mail: Mailer) -> None:
    """Give ``auth`` (Eden's AuthS3) the outbox's account flows, ``mail`` as
    their mailer."""
    cls = type(auth)
    if not isinstance(auth, EdenAuthMixin):
        if cls not in _CLASSES:
            _CLASSES[cls] = type("Outbox" + cls.__name__, (EdenAuthMixin, cls), {})
        auth.__class__ = _CLASSES[cls]
    auth.settings.mailer = mail
    auth.configure_flows()


class EdenAuthMixin(OutboxAuthMixin):
    """The app's flows in Eden's AuthS3: reset and username recovery are the
    app's (Eden's formstyle); registration and Eden's approval keep Eden's
    code, with names cleaned, the limits taken and the mail marked."""

    outbox_public_url = None  # Eden's links: settings.base.public_url, checked

    def register(
        self,
        next: Any = DEFAULT,
        onvalidation: Callbacks = DEFAULT,
        onaccept: Any = DEFAULT,
        log: Any = DEFAULT,
        **kwargs: Any,
    ) -> object:
        """Eden's register; the limits and the name cleaning join the
        onvalidation Eden's controller has just set."""
        if onvalidation is DEFAULT:
            onvalidation = self.settings.register_onvalidation
        onvalidation = as_callbacks(onvalidation) + [self._check_deliverable]
        with self._flow("register"):
            return super().register(
                next=next, onvalidation=onvalidation, onaccept=onaccept, log=log, **kwargs
            )

    def reset_password(self, *args: Any, **kwargs: Any) -> object:
        """Eden's; without a key in the link or the session Eden redirects
        to nowhere and fails on (a ticket): the reset request instead."""
        if not (current.request.vars.key or reset_password_key(current.session)):
            current.session.flash = self.messages.invalid_reset_password
            redirect(self.url(args="retrieve_password"))
        return super().reset_password(*args, **kwargs)

    def s3_verify_user(self, user: Row) -> object:
        """Eden's; the names it puts in the approver's mail on one line (also
        those stored before the outbox was installed), its mail marked."""
        for name in NAME_FIELDS:
            if user.get(name) is not None:
                user[name] = clean_name(user[name])
        with self._flow("approve"):
            return super().s3_verify_user(user)

    def _flow(self, flow: str) -> "_Marked":
        """While the block runs, mail is marked as account mail of ``flow``."""
        return _Marked(self, flow)

    def _same_answer(self, *args: Any, **kwargs: Any) -> object:
        """The app's one-answer form, in Eden's formstyle."""
        s = self.settings
        style, s.formstyle = s.formstyle, current.deployment_settings.get_ui_formstyle()
        try:
            return super()._same_answer(*args, **kwargs)
        finally:
            s.formstyle = style


class _Marked:
    """Context: ``auth.settings.mailer`` marks what it queues (unless already
    marking, as inside ``auth()``)."""

    def __init__(self, auth: AuthBase, flow: str) -> None:
        self.auth, self.flow = auth, flow

    def __enter__(self) -> None:
        s, outbox = self.auth.settings, self.auth.outbox_mail
        self.mailer = s.mailer
        if outbox is not None and s.mailer is outbox:
            s.mailer = FlowMailer(outbox, self.flow)

    def __exit__(self, *exc: object) -> None:
        self.auth.settings.mailer = self.mailer
