"""Mail settings: the outbox's own defaults, a snapshot taken at pass time,
the check for example values, and the fingerprint that tells when the admin
changed something.

Settings are read when a delivery pass starts, never cached from construction,
so a repaired ``private/appconfig.ini`` takes effect on the next pass.

An upper part (accounts, bounces) adds its own settings, checks and tables
through ``register()``, the core's one hook: the core imports nothing of it.
"""

import dataclasses
import functools
import hashlib
import ipaddress
import math
import re
import ssl
from collections.abc import Callable
from ssl import SSLContext
from typing import Any, Protocol

from ..transport.base import LoggingTransport, Transport
from ..transport.smtp import SmtpTransport
from .message import ADDRESS_RE, InvalidMessage, bare, unsubscribe_header
from .returnpath import usable
from .store import OutboxStore, add_tables

# Defaults MailS3 adds to web2py's Mail.settings (documented in docs/settings.md).
DEFAULTS = dict(
    timeout=30,  # seconds for each SMTP connect and reply
    batch_size=100,  # messages claimed by one worker at a time
    sessions=8,  # SMTP sessions one worker runs at once
    lease=600,  # seconds a claim is valid before others may retry it
    max_attempts=8,  # transient failures before a message fails for good
    max_age=3 * 24 * 3600,  # seconds after queueing before retries stop
    retry_base=60,  # first retry delay in seconds; doubles each attempt
    retry_max=6 * 3600,  # longest retry delay in seconds
    probe_interval=300,  # seconds between re-tries of mail held by an outage
    rate_limit=None,  # e.g. "100/hour" or "30/minute", across all workers
    config_names=None,  # {"[smtp] sender": its name, "file": file} where
    # the admin edits it (Sahana Eden: settings.mail.*)
    max_size=25 * 1024 * 1024,  # bytes; larger mail is refused by send()
    default_priority=5,  # 1 urgent ... 9 bulk; lower goes first
    worker_name=None,  # shown in the attempt log; default host#pid
    # An ssl.SSLContext for tls/ssl, used as it is; None: verify the server's
    # certificate unless self_signed_certificate (web2py master's Mail setting,
    # for a relay with a self-signed certificate).
    ssl_context=None,
    self_signed_certificate=False,
    transport=None,  # callable(Snapshot) -> Transport; default SMTP
    pipelining=True,  # False: one command at a time even where the
    # server offers PIPELINING (RFC 2920), for a relay
    # that offers it and then mishandles it
)

# Values that ship in web2py's and Sahana Eden's example configurations.
EXAMPLE_SENDERS = {"you@gmail.com", "sahana@example.org", "noreply@example.com", "you@example.com"}
EXAMPLE_LOGINS = {"username:password"}
EXAMPLE_SERVERS = {"smtp.gmail.com:587"}  # web2py's example, with the login above
EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net", "example", "invalid", "test")
_SERVER_RE = re.compile(r"\A(?:[A-Za-z0-9.-]+|\[[0-9a-fA-F:.]+\])(:\d{1,5})?\Z")

# web2py's Storage (Mail.settings, and the values read_values() gives): gluon
# has no type information.
Storage = Any
# (appconfig key, what is wrong, blocks sending): one finding of the check.
Finding = tuple[str, str, bool]


def _is_example_address(address: str | None) -> bool:
    addr = bare(address or "").lower()
    domain = addr.rpartition("@")[2]
    return addr in EXAMPLE_SENDERS or any(
        domain == d or domain.endswith("." + d) for d in EXAMPLE_DOMAINS
    )


class Snapshot:
    """The SMTP settings in force for one delivery pass: what a transport
    reads (transport.base.Settings) and the pool (pool.Sessions).

    ``server``, ``sender`` and ``login`` are the site's text (apply_config()
    writes text or None); any other value a site sets is a blocking finding,
    so no transport is made with it.
    """

    server: str | None
    sender: str | None
    login: str | None
    tls: bool
    ssl: bool
    timeout: float
    hostname: str | None
    ssl_context: SSLContext | None
    self_signed_certificate: bool
    pipelining: bool

    def __init__(self, settings: Storage) -> None:
        self.values, self.problems = read_values(settings)
        v = self.values
        self.server = settings.server
        self.sender = settings.sender
        self.login = settings.login
        self.tls, self.ssl = v.tls, v.ssl
        self.timeout = v.timeout
        names = settings.get("config_names")
        self.names: dict[str, str] = names if isinstance(names, dict) else {}
        self.hostname = v.hostname
        self.dkim: Storage | None = v.dkim
        self.ssl_context = v.ssl_context
        self.custom: Callable[[Snapshot], Transport] | None = v.transport
        self.self_signed_certificate = v.self_signed_certificate
        self.pipelining = v.pipelining
        self.return_path = usable(settings.bounce_address)

    def transport(self) -> Transport:
        """A new, unopened Transport for these settings: the site's own
        (``settings.transport``), web2py's logging mode, or SMTP."""
        if self.custom is not None:
            return self.custom(self)
        if self.logging:
            return LoggingTransport(self)
        return SmtpTransport(self)

    @property
    def logging(self) -> bool:
        """web2py's development mode: server 'logging' or 'logging:PATH'."""
        server = self.server
        return isinstance(server, str) and (server == "logging" or server.startswith("logging:"))

    @property
    def smtp(self) -> bool:
        return self.custom is None and not self.logging

    @property
    def host_port(self) -> tuple[str, int]:
        """(host, port) from 'host:port', with 465/587/25 as the default port."""
        server = self.server if isinstance(self.server, str) else ""
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            host, port = server, ""
        host = host.strip("[]")
        return host, int(port) if port else (465 if self.ssl else 587 if self.tls else 25)

    def fingerprint(self) -> str:
        """A short hash of what the admin configures; never the password itself."""
        login = self.login if isinstance(self.login, str) else str(self.login or "")
        user, _, password = login.partition(":")
        secret = hashlib.sha256(password.encode("utf-8")).hexdigest()
        parts = [str(self.server), str(self.sender), user, secret, str(self.tls), str(self.ssl)]
        if self.custom is not None:  # another transport: other settings
            parts.append(getattr(self.custom, "__qualname__", type(self.custom).__qualname__))
        if self.self_signed_certificate:  # it can end a TLS failure: a change
            parts.append("self_signed_certificate")
        if self.return_path:  # the relay may refuse it as the envelope sender
            parts.append("return_path " + self.return_path)
        # A setting that holds mail: fixing it is a change of the settings.
        parts += [p.finding()[1] for p in self.problems if p.blocking]
        raw = "\x00".join(parts)
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]

    def blocking_problem(self) -> str | None:
        """Why no message can be sent with these settings, or None.

        Only errors that make every send fail: the rest of ``findings()`` are
        advice for the dashboard.
        """
        for key, problem, blocking in self.findings():
            if blocking:
                key, where = self.names.get(key, key), self.names.get("file")
                return "%s (edit %s)" % (problem, "%s in %s" % (key, where) if where else key)
        return None

    def findings(self) -> list[Finding]:
        """(appconfig key, what is wrong, blocks sending) for each problem.

        The server, login and port checks are for SMTP only: web2py's logging
        mode and a site's own transport need a sender and nothing else here.
        """
        out = self._sender_findings()
        if self.smtp:
            out = self._server_findings() + out + self._login_findings() + self._port_findings()
        return out + [p.finding() for p in self.problems]

    def _server_findings(self) -> list[Finding]:
        server = self.server
        if not isinstance(server, str) or not server.strip():
            return [("[smtp] server", "no SMTP server is configured", True)]
        if server in ("gae", "aws"):
            return [
                (
                    "[smtp] server",
                    "server %r is not an SMTP server; the outbox "
                    "delivers over SMTP (or 'logging')" % server,
                    True,
                )
            ]
        if not _SERVER_RE.match(server) or not _host_name(self.host_port[0]):
            return [
                (
                    "[smtp] server",
                    "server %r is not of the form host:port (a host name or an IP "
                    "address, and a port from 1 to 65535)" % server[:100],
                    True,
                )
            ]
        if not 0 < self.host_port[1] < 65536:
            return [("[smtp] server", "server %r has a port outside 1-65535" % server, True)]
        if server in EXAMPLE_SERVERS and (
            self.login in EXAMPLE_LOGINS or _is_example_address(self.sender)
        ):
            return [
                (
                    "[smtp] server",
                    "server %r is web2py's example value, left "
                    "with the example login or sender" % server,
                    True,
                )
            ]
        return []

    def _sender_findings(self) -> list[Finding]:
        sender = self.sender
        if not isinstance(sender, str) or not sender.strip():
            return [("[smtp] sender", "no sender address is configured", True)]
        if not ADDRESS_RE.match(bare(sender)):
            return [("[smtp] sender", "sender %r is not a valid e-mail address" % sender, True)]
        if _is_example_address(sender):
            return [("[smtp] sender", "sender %r is the unedited example address" % sender, True)]
        return []

    def _login_findings(self) -> list[Finding]:
        login = self.login
        if login is not None and not isinstance(login, str):
            return [("[smtp] login", "login must be text, user:password", True)]
        if login in EXAMPLE_LOGINS:
            return [("[smtp] login", "login is the unedited example 'username:password'", True)]
        if login and ":" not in login:
            return [("[smtp] login", "login must be user:password", True)]
        if login and not login.partition(":")[0]:
            return [("[smtp] login", "login has no user name before the ':'", True)]
        if login and not login.partition(":")[2]:
            return [("[smtp] login", "login has no password after the ':'", True)]
        return []

    def _port_findings(self) -> list[Finding]:
        """Advice only: tls/ssl settings that do not match the port."""
        if not (isinstance(self.server, str) and _SERVER_RE.match(self.server)):
            return []
        out: list[Finding] = []
        port = self.host_port[1]
        if self.ssl and port == 587:
            out.append(
                (
                    "[smtp] ssl",
                    "ssl is on but port 587 expects STARTTLS: set ssl = false and tls = true",
                    False,
                )
            )
        if self.ssl and port == 25:
            out.append(("[smtp] ssl", "ssl is on but port 25 is plain SMTP", False))
        if not self.ssl and port == 465:
            out.append(("[smtp] ssl", "port 465 expects implicit TLS: set ssl = true", False))
        if (
            self.login
            and not (self.tls or self.ssl)
            and self.host_port[0] not in ("localhost", "127.0.0.1", "::1")
        ):
            out.append(
                (
                    "[smtp] tls",
                    "a password would cross the network unencrypted: turn on tls or ssl",
                    False,
                )
            )
        return out


def optional_text(value: object) -> str | None:
    """A configured text as it is, or None when it is missing or empty."""
    return None if value in (None, "") else str(value)


def _flag(value: object) -> object:
    """True or False; any other value as it is, for read_values() to report
    (its default, off, is then used): "maybe" is not silently false."""
    if value in (None, ""):
        return False
    try:
        return boolean(value)
    except _Bad:
        return value


# appconfig.ini [outbox] keys (Eden: settings.mail.<key>), copied as they are:
# read_values() reads them.
OUTBOX_KEYS = (
    "batch_size",
    "sessions",
    "lease",
    "max_attempts",
    "max_age",
    "retry_base",
    "retry_max",
    "probe_interval",
    "rate_limit",
    "max_size",
    "timeout",
    "pipelining",
    "default_priority",
)


class _Configured(Protocol):
    """A mailer with web2py's settings (Mail, MailS3)."""

    settings: Storage


def apply_config(mail: _Configured, get: Callable[[str], Any]) -> None:
    """Copy the admin's settings onto ``mail.settings``.

    ``get(key)`` returns a value such as ``get("smtp.server")`` (web2py's
    ``AppConfig.get``, or a Sahana deployment-settings lookup). Missing keys
    leave the current value; ``[smtp]`` keys are copied even when empty, since
    an emptied server or sender must stop delivery, not keep an old value.
    ``[outbox]`` values are copied as given (text, numbers): ``read_values()``
    turns them into what delivery uses and reports those it cannot use.
    """
    s = mail.settings
    s.server, s.sender, s.login = [
        optional_text(get("smtp." + key)) for key in ("server", "sender", "login")
    ]
    s.tls = _flag(get("smtp.tls"))
    s.ssl = _flag(get("smtp.ssl"))
    s.self_signed_certificate = _flag(get("smtp.self_signed_certificate"))
    for key in OUTBOX_KEYS:
        value = get("outbox." + key)
        if value not in (None, ""):
            s[key] = value
        elif key == "rate_limit":
            s[key] = None
    for part in parts():
        part.apply(s, get)


# ------------------------------------------ delivery settings, read in one place
# Every value of mail.settings that delivery and send() use is read here, from
# whatever the site gave: numbers as numbers or text ("10", "2.5"), seconds
# with fractions. A value that cannot be used is reported (the settings check,
# the log) and its default used; where no default is safe (a rate limit, a
# transport or a DKIM key the admin meant to have) mail is held with the reason.
class _Bad(ValueError):
    """A setting's value that cannot be used."""


@dataclasses.dataclass(frozen=True)
class Reader:
    """A setting's reader (``Part.readers``): called with the given value, the
    value delivery uses, or _Bad; ``expected`` says what it takes, for the
    finding."""

    read: Callable[[Any], Any]
    expected: str

    def __call__(self, value: object) -> Any:
        return self.read(value)


def _expects(expected: str) -> Callable[[Callable[[Any], Any]], Reader]:
    """Make the decorated function a Reader that expects ``expected``."""
    return lambda read: Reader(read, expected)


def _number(value: object) -> float:
    """A finite float from an int, a float or numeric text; _Bad otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Bad()
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise _Bad() from None
    if not math.isfinite(number):
        raise _Bad()
    return number


def _seconds(high: int, low: float | None = None) -> Reader:
    """Seconds above 0 (from ``low``), at most ``high``."""

    def read(value: object) -> float:
        number = _number(value)
        if not (number >= low if low else number > 0) or number > high:
            raise _Bad()
        return int(number) if number == int(number) else number

    return Reader(
        read, "a number of seconds %s, at most %d" % ("from %s" % low if low else "above 0", high)
    )


def whole(low: int, high: int) -> Reader:
    """A reader of whole numbers from ``low`` to ``high`` (``Part.readers``)."""

    def read(value: object) -> int:
        number = _number(value)
        if number != int(number) or not low <= number <= high:
            raise _Bad()
        return int(number)

    return Reader(read, "a whole number from %d to %d" % (low, high))


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@_expects("true or false")
def boolean(value: object) -> bool:
    """A reader of true or false (also 1/0, yes/no, on/off)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise _Bad()


_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@_expects("like 100/hour: a whole number above 0 per second, minute, hour or day")
def _rate(value: object) -> tuple[int, int]:
    """'100/hour' (or '100': an hour) -> (100, 3600)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Bad()
    count, _, unit = str(value).strip().partition("/")
    unit = unit.strip().lower()
    unit = unit[:-1] if unit.endswith("s") else unit
    count = count.strip()
    if (
        (unit or "hour") not in _UNITS
        or not (count.isascii() and count.isdigit())
        or not 0 < int(count) <= 10**9
    ):
        raise _Bad()
    return int(count), _UNITS[unit or "hour"]


@_expects("text of 1 to 100 printable characters")
def _name(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 100 or not value.isprintable():
        raise _Bad()
    return value


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(r"%s(?:\.%s)*|\[[0-9A-Fa-f:.]{2,45}\]" % (_LABEL, _LABEL))


@_expects("a host name")
def _hostname(value: object) -> str:
    if not isinstance(value, str) or len(value) > 255 or not _HOSTNAME_RE.fullmatch(value):
        raise _Bad()
    return value


def _host_name(host: str) -> bool:
    """Whether ``host`` (from [smtp] server) can name a server: an IP address,
    or a host name whose last label is not a number (before, '-1' was taken
    and mail was held as a connection error, never named)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    host = host[:-1] if host.endswith(".") else host  # a rooted name
    return bool(_HOSTNAME_RE.fullmatch(host)) and not host.rpartition(".")[2].isdigit()


def _instance(kind: Callable[[object], bool], expected: str) -> Reader:
    def read(value: object) -> object:
        if not kind(value):
            raise _Bad()
        return value

    return Reader(read, expected)


@_expects("Storage(key=..., selector=...) that signs")
def _dkim(value: Storage) -> Storage:
    key, selector = getattr(value, "key", None), getattr(value, "selector", None)
    if not isinstance(key, (str, bytes)) or not isinstance(selector, str):
        raise _Bad()
    failed = _cannot_sign(key, selector)
    if failed:
        raise _Bad(failed)
    return value


@_expects("one e-mail address (optionally ?subject=...)")
def _unsubscribe(value: object) -> object:
    """The site-wide List-Unsubscribe address: one that cannot be used is
    left out of the mail (it is optional), never a reason to refuse it."""
    try:
        unsubscribe_header(value)
    except (InvalidMessage, TypeError, ValueError):
        raise _Bad() from None
    return value


@functools.lru_cache(maxsize=8)
def _cannot_sign(key: str | bytes, selector: str) -> str | None:
    """Why a test message cannot be signed with this key, or None: a key
    that cannot sign would otherwise fail every message as it is built."""
    from email.mime.text import MIMEText

    from gluon.tools import dkim_sign

    sample = MIMEText("test")
    sample["From"] = "test@example.net"
    try:
        dkim_sign(sample, key, selector)
    except Exception as e:  # noqa: BLE001 (whatever a bad key raises is the answer, shown)
        return "%s: %s" % (type(e).__name__, e)
    return None


# key: (reader, default, blocking: no default is safe, mail is held instead)
_READERS: dict[str, tuple[Reader, Any, bool]] = dict(
    timeout=(_seconds(3600, 0.5), DEFAULTS["timeout"], False),
    batch_size=(whole(1, 100000), DEFAULTS["batch_size"], False),
    sessions=(whole(1, 100), DEFAULTS["sessions"], False),
    lease=(_seconds(7 * 86400, 1), DEFAULTS["lease"], False),
    max_attempts=(whole(1, 1000), DEFAULTS["max_attempts"], False),
    max_age=(_seconds(10 * 365 * 86400), DEFAULTS["max_age"], False),
    retry_base=(_seconds(30 * 86400), DEFAULTS["retry_base"], False),
    retry_max=(_seconds(365 * 86400), DEFAULTS["retry_max"], False),
    probe_interval=(_seconds(7 * 86400), DEFAULTS["probe_interval"], False),
    rate_limit=(_rate, None, True),
    max_size=(whole(1, 2**31 - 1), DEFAULTS["max_size"], False),
    default_priority=(whole(1, 9), DEFAULTS["default_priority"], False),
    worker_name=(_name, None, False),
    hostname=(_hostname, None, False),
    pipelining=(boolean, True, False),
    self_signed_certificate=(boolean, False, False),
    # Neither off (a password in clear) nor on is safe to guess for a typo.
    tls=(boolean, False, True),
    ssl=(boolean, False, True),
    ssl_context=(
        _instance(lambda v: isinstance(v, ssl.SSLContext), "an ssl.SSLContext"),
        None,
        False,
    ),
    transport=(_instance(callable, "a callable that makes a Transport"), None, True),
    dkim=(_dkim, None, True),
    list_unsubscribe=(_unsubscribe, None, False),
)

_SMTP_FLAGS = ("tls", "ssl", "self_signed_certificate")  # [smtp] keys, not [outbox]


class Problem:
    """A setting's value that cannot be used: its key, the value, what is
    expected, and the default used instead (or, ``blocking``, mail held)."""

    def __init__(
        self, key: str, value: object, expected: str, default: object, blocking: bool
    ) -> None:
        self.key, self.value, self.expected = key, value, expected
        self.default, self.blocking = default, blocking

    def finding(self) -> Finding:
        """(appconfig key, what is wrong, blocks sending), as findings() gives."""
        try:
            shown = repr(self.value)
        except ValueError:  # an int over 4,300 digits cannot be printed (Python 3.11)
            shown = "a number too long to print"
        if len(shown) > 60:
            shown = shown[:57] + "..."
        then = (
            "mail is held until it is fixed"
            if self.blocking
            else "the default %r is used" % (self.default,)
        )
        section = "smtp" if self.key in _SMTP_FLAGS else "outbox"
        return (
            "[%s] %s" % (section, self.key),
            "%s = %s cannot be used: expected %s; %s" % (self.key, shown, self.expected, then),
            self.blocking,
        )


def read_value(settings: Storage, key: str) -> tuple[Any, Problem | None]:
    """(value delivery uses, Problem or None) of ``settings[key]``."""
    raw: object = settings.get(key)
    try:
        # mypy does not count a class as Hashable (its metaclass's __hash__); it is.
        used, problem = _read_cached(key, type(raw), raw)  # type: ignore[arg-type]
    except TypeError:  # an unhashable value: not kept
        return read_raw(key, raw)
    if problem is not None and problem.value is not raw:
        # An equal value read before may show otherwise (0.0 for -0.0):
        # the problem names the value the admin wrote.
        problem = Problem(key, raw, problem.expected, problem.default, problem.blocking)
    return used, problem


@functools.lru_cache(maxsize=512)
def _read_cached(key: str, kind: type, raw: object) -> tuple[Any, Problem | None]:
    return read_raw(key, raw)


def read_raw(key: str, raw: object) -> tuple[Any, Problem | None]:
    """(value delivery uses, Problem or None) of the value ``raw`` given for
    ``key``: a part's ``apply`` reads the admin's values with it."""
    reader, default, blocking = _READERS[key]
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default, None
    try:
        return reader(raw), None
    except ValueError as e:  # _Bad, or a conversion Python refused (an int too long to print)
        detail = str(e) if isinstance(e, _Bad) else ""
        expected = "%s (%s)" % (reader.expected, detail) if detail else reader.expected
        return default, Problem(key, raw, expected, default, blocking)


def read_values(settings: Storage) -> tuple[Storage, list[Problem]]:
    """(Storage of every value above as delivery uses it, [Problem])."""
    from gluon.storage import Storage

    values, problems = Storage(), list[Problem]()
    for key in _READERS:
        values[key], problem = read_value(settings, key)
        if problem is not None:
            problems.append(problem)
    if values.retry_max < values.retry_base:
        values.retry_max = values.retry_base
    return values, problems


# --------------------------------------------- the hook: what upper parts add
@dataclasses.dataclass(frozen=True)
class Part:
    """What an upper part (accounts, bounces) adds to the core's settings.

    ``defaults``: its keys on ``Mail.settings`` with their values (MailS3 adds
    every key of ``DEFAULTS`` before web2py's Mail locks its keys);
    ``readers``: {key: (reader, default, blocking)}, as the core's own, so
    ``read_value()`` reads them; ``keys``: its ``[outbox]`` keys (Sahana
    Eden: ``settings.mail.<key>``); ``apply(settings, get)``: its part of
    ``apply_config()``; ``findings(settings)``: its (key, advice, blocking)
    for the settings check; ``tables(store, migrate)``, optional: defines its
    tables with every store (store.add_tables); ``secret(settings)``,
    optional: a password its settings hold, which check.scrub() masks.
    """

    name: str
    defaults: dict[str, Any]
    readers: dict[str, tuple[Reader, Any, bool]]
    keys: tuple[str, ...]
    apply: Callable[[Storage, Callable[[str], Any]], None]
    findings: Callable[[Storage], list[Finding]]
    tables: Callable[[OutboxStore, bool], None] | None = None
    secret: Callable[[Storage], str] | None = None


_PARTS: dict[str, Part] = {}


def register(part: Part) -> None:
    """Join ``part`` to the core. A part registers when it is imported (its
    ``__init__`` imports the module that calls this), so once a process:
    web2py imports modules once and runs the models again on every request.
    Registering a name again replaces it; parts are used in name order,
    whatever order they were imported in."""
    _PARTS[part.name] = part
    DEFAULTS.update(part.defaults)
    _READERS.update(part.readers)
    _read_cached.cache_clear()
    if part.tables is not None:
        add_tables(part.name, part.tables)


def parts() -> list[Part]:
    """The registered parts, in name order."""
    return [_PARTS[name] for name in sorted(_PARTS)]


def part_findings(settings: Storage) -> list[Finding]:
    """(key, advice, blocking) of every registered part, for the settings
    check beside ``Snapshot(settings).findings()``."""
    return [found for part in parts() for found in part.findings(settings)]


def outbox_keys() -> tuple[str, ...]:
    """Every ``[outbox]`` key: the core's and the registered parts'."""
    return OUTBOX_KEYS + tuple(key for part in parts() for key in part.keys)
