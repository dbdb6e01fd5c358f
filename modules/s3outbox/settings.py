# -*- coding: utf-8 -*-
"""Mail settings: the outbox's own defaults, a snapshot taken at pass time,
the check for example values, and the fingerprint that tells when the admin
changed something.

Settings are read when a delivery pass starts, never cached from construction,
so a repaired ``private/appconfig.ini`` takes effect on the next pass.
"""

import hashlib
import re

from .bounces import findings as bounce_findings
from .message import ADDRESS_RE, bare
from .returnpath import usable
from .smtp import SmtpTransport
from .transport import LoggingTransport

# Defaults MailS3 adds to web2py's Mail.settings (documented in the README).
DEFAULTS = dict(
    timeout=30,               # seconds for each SMTP connect and reply
    batch_size=100,           # messages claimed by one worker at a time
    sessions=8,               # SMTP sessions one worker runs at once
    lease=600,                # seconds a claim is valid before others may retry it
    max_attempts=8,           # transient failures before a message fails for good
    max_age=3 * 24 * 3600,    # seconds after queueing before retries stop
    retry_base=60,            # first retry delay in seconds; doubles each attempt
    retry_max=6 * 3600,       # longest retry delay in seconds
    probe_interval=300,       # seconds between re-tries of mail held by an outage
    rate_limit=None,          # e.g. "100/hour" or "30/minute", across all workers
    config_names=None,        # {"[smtp] sender": its name, "file": file} where
                              # the admin edits it (Sahana Eden: settings.mail.*)
    max_size=25 * 1024 * 1024,  # bytes; larger mail is refused by send()
    default_priority=5,       # 1 urgent ... 9 bulk; lower goes first
    worker_name=None,         # shown in the attempt log; default host#pid
    # An ssl.SSLContext for tls/ssl, used as it is; None: verify the server's
    # certificate unless self_signed_certificate (web2py master's Mail setting,
    # for a relay with a self-signed certificate).
    ssl_context=None,
    self_signed_certificate=False,
    transport=None,           # callable(Snapshot) -> Transport; default SMTP
    pipelining=True,          # False: one command at a time even where the
                              # server offers PIPELINING (RFC 2920), for a relay
                              # that offers it and then mishandles it
)

# Bounces (returnpath.py, bounces.py); README "Bounces".
BOUNCE_DEFAULTS = dict(
    bounce_address=None,      # envelope sender local+TOKEN@domain of each message
    bounce_mailbox=None,      # imaps:// or pop3s:// URL of the mailbox reports reach
    bounce_interval=300,      # seconds between reads of that mailbox
    bounce_errors=(),         # keys above whose configured value was refused
)
DEFAULTS.update(BOUNCE_DEFAULTS)

# Account-flow safety (authglue.py, flowlimit.py, retention.py); README "Settings".
SAFETY_DEFAULTS = dict(
    flow_window=3600,         # seconds of one rate-limit window
    flow_per_address=3,       # account mails of one flow to one address a window (0: no limit)
    flow_per_client=30,       # account-flow requests from one client network a window
    flow_global=300,          # reset and username mails of the whole site a window
    flow_global_register=300,  # registrations of the whole site a window
    flow_codes_per_address=10,  # two-step login codes to one address a window
    flow_reset_pending=900,   # seconds a reset link stays the only one for its account
    flow_trust_forwarded=False,  # client = last X-Forwarded-For (behind own proxy)
    secret_retention=3600,    # seconds after delivery before account mail is scrubbed
    sent_retention_days=30,   # sent mail is purged after this many days (0: never)
    public_url=None,          # [app] public_url: links in mail
    host_names=None,          # [host] names: the Host values the site answers to
    safety_errors=(),         # keys above whose configured value was refused
)
DEFAULTS.update(SAFETY_DEFAULTS)

# Values that ship in web2py's and Sahana Eden's example configurations.
EXAMPLE_SENDERS = {"you@gmail.com", "sahana@example.org", "noreply@example.com",
                   "you@example.com"}
EXAMPLE_LOGINS = {"username:password"}
EXAMPLE_SERVERS = {"smtp.gmail.com:587"}  # web2py's example, with the login above
EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net", "example",
                   "invalid", "test")
_SERVER_RE = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:.]+\](:\d{1,5})?$")


def _is_example_address(address):
    addr = bare(address or "").lower()
    domain = addr.rpartition("@")[2]
    return addr in EXAMPLE_SENDERS or any(
        domain == d or domain.endswith("." + d) for d in EXAMPLE_DOMAINS)


class Snapshot(object):
    """The SMTP settings in force for one delivery pass."""

    def __init__(self, settings):
        self.server = settings.server
        self.sender = settings.sender
        self.login = settings.login
        self.tls = bool(settings.tls)
        self.ssl = bool(settings.ssl)
        self.timeout = settings.timeout or DEFAULTS["timeout"]
        self.names = settings.config_names or {}
        self.hostname = settings.hostname
        self.dkim = settings.dkim
        self.ssl_context = settings.ssl_context
        self.custom = settings.transport
        self.self_signed_certificate = bool(settings.self_signed_certificate)
        self.pipelining = settings.pipelining is not False
        self.return_path = usable(settings.bounce_address)

    def transport(self):
        """A new, unopened Transport for these settings: the site's own
        (``settings.transport``), web2py's logging mode, or SMTP."""
        if self.custom is not None:
            return self.custom(self)
        if self.logging:
            return LoggingTransport(self)
        return SmtpTransport(self)

    @property
    def logging(self):
        """web2py's development mode: server 'logging' or 'logging:PATH'."""
        server = self.server
        return isinstance(server, str) and (server == "logging" or
                                            server.startswith("logging:"))

    @property
    def smtp(self):
        return self.custom is None and not self.logging

    @property
    def host_port(self):
        """(host, port) from 'host:port', with 465/587/25 as the default port."""
        host, _, port = (self.server or "").rpartition(":")
        if not host or not port.isdigit():
            host, port = self.server or "", None
        host = host.strip("[]")
        port = int(port) if port else (465 if self.ssl else 587 if self.tls else 25)
        return host, port

    def fingerprint(self):
        """A short hash of what the admin configures; never the password itself."""
        user, _, password = (self.login or "").partition(":")
        secret = hashlib.sha256(password.encode("utf-8")).hexdigest()
        parts = [str(self.server), str(self.sender), user, secret, str(self.tls),
                 str(self.ssl)]
        if self.custom is not None:  # another transport: other settings
            parts.append(getattr(self.custom, "__qualname__",
                                 type(self.custom).__qualname__))
        if self.self_signed_certificate:  # it can end a TLS failure: a change
            parts.append("self_signed_certificate")
        if self.return_path:  # the relay may refuse it as the envelope sender
            parts.append("return_path " + self.return_path)
        raw = "\x00".join(parts)
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]

    def blocking_problem(self):
        """Why no message can be sent with these settings, or None.

        Only errors that make every send fail: the rest of ``findings()`` are
        advice for the dashboard.
        """
        for key, problem, blocking in self.findings():
            if blocking:
                key, where = self.names.get(key, key), self.names.get("file")
                return "%s (edit %s)" % (problem, "%s in %s" % (key, where)
                                         if where else key)
        return None

    def findings(self):
        """(appconfig key, what is wrong, blocks sending) for each problem.

        The server, login and port checks are for SMTP only: web2py's logging
        mode and a site's own transport need a sender and nothing else here.
        """
        out = self._sender_findings()
        if self.smtp:
            out = self._server_findings() + out + self._login_findings() + \
                self._port_findings()
        return out

    def _server_findings(self):
        server = self.server
        if not isinstance(server, str) or not server.strip():
            return [("[smtp] server", "no SMTP server is configured", True)]
        if server in ("gae", "aws"):
            return [("[smtp] server", "server %r is not an SMTP server; the outbox "
                     "delivers over SMTP (or 'logging')" % server, True)]
        if not _SERVER_RE.match(server):
            return [("[smtp] server", "server %r is not of the form host:port"
                     % server, True)]
        if not 0 < self.host_port[1] < 65536:
            return [("[smtp] server", "server %r has a port outside 1-65535"
                     % server, True)]
        if server in EXAMPLE_SERVERS and (self.login in EXAMPLE_LOGINS or
                                          _is_example_address(self.sender)):
            return [("[smtp] server", "server %r is web2py's example value, left "
                     "with the example login or sender" % server, True)]
        return []

    def _sender_findings(self):
        sender = self.sender
        if not isinstance(sender, str) or not sender.strip():
            return [("[smtp] sender", "no sender address is configured", True)]
        if not ADDRESS_RE.match(bare(sender)):
            return [("[smtp] sender", "sender %r is not a valid e-mail address"
                     % sender, True)]
        if _is_example_address(sender):
            return [("[smtp] sender", "sender %r is the unedited example address"
                     % sender, True)]
        return []

    def _login_findings(self):
        login = self.login
        if login in EXAMPLE_LOGINS:
            return [("[smtp] login", "login is the unedited example "
                     "'username:password'", True)]
        if login and ":" not in login:
            return [("[smtp] login", "login must be user:password", True)]
        if login and not login.partition(":")[0]:
            return [("[smtp] login", "login has no user name before the ':'", True)]
        if login and not login.partition(":")[2]:
            return [("[smtp] login", "login has no password after the ':'", True)]
        return []

    def _port_findings(self):
        """Advice only: tls/ssl settings that do not match the port."""
        if not (isinstance(self.server, str) and _SERVER_RE.match(self.server)):
            return []
        out = []
        port = self.host_port[1]
        if self.ssl and port == 587:
            out.append(("[smtp] ssl", "ssl is on but port 587 expects STARTTLS: "
                        "set ssl = false and tls = true", False))
        if self.ssl and port == 25:
            out.append(("[smtp] ssl", "ssl is on but port 25 is plain SMTP", False))
        if not self.ssl and port == 465:
            out.append(("[smtp] ssl", "port 465 expects implicit TLS: set "
                        "ssl = true", False))
        if self.login and not (self.tls or self.ssl) and \
                self.host_port[0] not in ("localhost", "127.0.0.1", "::1"):
            out.append(("[smtp] tls", "a password would cross the network "
                        "unencrypted: turn on tls or ssl", False))
        return out


def _text(value):
    return None if value in (None, "") else str(value)


def _flag(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


# appconfig.ini [outbox] keys and how to read them; the rest of DEFAULTS are
# set in code.
_OUTBOX_KEYS = dict(batch_size=int, sessions=int, lease=int, max_attempts=int,
                    max_age=int, retry_base=int, retry_max=int, probe_interval=int,
                    rate_limit=str, max_size=int, timeout=int, pipelining=_flag)


def apply_config(mail, get):
    """Copy the admin's settings onto ``mail.settings``.

    ``get(key)`` returns a value such as ``get("smtp.server")`` (web2py's
    ``AppConfig.get``, or a Sahana deployment-settings lookup). Missing keys
    leave the current value; ``[smtp]`` keys are copied even when empty, since
    an emptied server or sender must stop delivery, not keep an old value.
    """
    s = mail.settings
    s.server, s.sender, s.login = [_text(get("smtp." + key))
                                   for key in ("server", "sender", "login")]
    s.tls = _flag(get("smtp.tls"))
    s.ssl = _flag(get("smtp.ssl"))
    s.self_signed_certificate = _flag(get("smtp.self_signed_certificate"))
    for key, kind in _OUTBOX_KEYS.items():
        value = get("outbox." + key)
        if value not in (None, ""):
            s[key] = kind(value)
        elif key == "rate_limit":
            s[key] = None
    apply_safety(s, get)
    apply_bounces(s, get)


def apply_bounces(s, get):
    """``[outbox] bounce_*`` onto ``s``; an interval that is not a whole
    number of seconds keeps its default and is reported (bounces.findings)."""
    s.bounce_address = _text(get("outbox.bounce_address"))
    s.bounce_mailbox = _text(get("outbox.bounce_mailbox"))
    value = str(get("outbox.bounce_interval") or "").strip()
    good = value.isascii() and value.isdigit() and int(value) > 0
    s.bounce_interval = int(value) if good else BOUNCE_DEFAULTS["bounce_interval"]
    s.bounce_errors = ["bounce_interval"] if value and not good else []


# ------------------------------------------------- account-flow safety block
def apply_safety(s, get):
    """``[outbox]`` limits and retention, ``[app] public_url`` and ``[host]
    names`` onto ``s``. A value that is not a whole number 0 or more keeps its
    default and is reported by ``safety_findings``."""
    s.public_url = _text(get("app.public_url"))
    names = get("host.names")
    if names not in (None, "") and not isinstance(names, str):
        names = ",".join(str(n) for n in names)  # AppConfig: a map for "a, b"
    s.host_names = _text(names)
    bad = []
    for key, default in SAFETY_DEFAULTS.items():
        if key in ("public_url", "host_names", "safety_errors"):
            continue
        value = get("outbox." + key)
        if value in (None, ""):
            s[key] = default
        elif isinstance(default, bool):
            s[key] = _flag(value)
        elif str(value).strip().isascii() and str(value).strip().isdigit():
            s[key] = int(str(value).strip())
        else:
            s[key] = default
            bad.append(key)
    s.safety_errors = bad


def safety_findings(s):
    """(appconfig key, advice, False) for the account-flow settings: never
    blocking, shown with the SMTP findings."""
    from .hostnames import HostNames  # here: settings must not import authglue
    out = [("[outbox] %s" % key, "%s must be a whole number, 0 or more; the default "
            "%s is used" % (key, SAFETY_DEFAULTS[key]), False)
           for key in s.get("safety_errors") or ()] + bounce_findings(s)
    names = HostNames([n for n in (s.host_names or "").split(",") if n.strip()])
    for item in names.bad:
        out.append(("[host] names", "%r is not host, host:port or host:*; it is "
                    "ignored" % item.strip(), False))
    if not s.public_url and names.names and not names.loopback_only():
        out.append(("[app] public_url", "public_url is empty on a site that is not "
                    "on loopback: links in mail use the request's Host (checked "
                    "against [host] names); set the site's address", False))
    for key in ("flow_per_address", "flow_per_client", "flow_global",
                "flow_global_register", "flow_codes_per_address"):
        if s.get(key) == 0:
            out.append(("[outbox] %s" % key, "%s is 0: that limit on account mail is "
                        "off" % key, False))
    return out
