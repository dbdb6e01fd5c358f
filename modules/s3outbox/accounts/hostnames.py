"""The Host header, checked before it can reach a link in a mail.

web2py's Auth matches ``Host`` against its ``host_names`` with ``fnmatch``:
``127.0.0.1:8000@evil.example`` matched ``127.0.0.1:*``, ``1:1@evil.example``
matched ``[::1]:*`` (a character class to fnmatch), and a genuine
``[::1]:8000`` did not. Here a Host is parsed strictly as ``host[:port]``
(a DNS name, an IPv4 address or a bracketed IPv6 literal; the port in ASCII
digits) and compared with each configured name exactly. A configured name is
``name``, ``name:port`` or ``name:*`` (any port); ``*`` stands for nothing
else. IPv6 literals compare by value, so ``[::1]`` equals ``[0:0::1]``.
"""

import ipaddress
import re
from collections.abc import Iterable
from typing import Literal, overload

# One DNS label: letters, digits, inner hyphens (underscores: some intranets).
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_NAME_RE = re.compile(r"^%s(?:\.%s)*\.?$" % (_LABEL, _LABEL))
_HOST_RE = re.compile(
    r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)"
    r"(?::(?P<port>[0-9]{1,5}|\*))?$"
)

LOOPBACK_NAMES = ("localhost:*", "127.0.0.1:*", "[::1]:*")
# (name, port): the port an int, None when absent, or "*" (any port: a
# configured name only).
Name = tuple[str, int | Literal["*"] | None]


@overload
def parse(value: object, wildcard: Literal[False] = False) -> tuple[str, int | None] | None: ...
@overload
def parse(value: object, wildcard: bool) -> Name | None: ...


def parse(value: object, wildcard: bool = False) -> Name | None:
    """(name, port) from ``host[:port]``, or None when it is anything else.

    ``name`` is lower-case; an IPv6 literal keeps its brackets in compressed
    form. ``port`` is an int, None when absent, or ``"*"`` when ``wildcard``
    allows it (configured names only).
    """
    if not isinstance(value, str) or len(value) > 262:
        return None
    m = _HOST_RE.match(value)
    if not m:
        return None
    host = m.group("host")
    port_text = m.group("port")
    if host.startswith("["):
        try:
            host = "[%s]" % ipaddress.IPv6Address(host[1:-1]).compressed
        except ValueError:
            return None
    elif not _NAME_RE.match(host) or host.replace(".", "").isdigit() and not _is_ipv4(host):
        return None
    if port_text == "*":
        if not wildcard:
            return None
        return host.lower().rstrip("."), "*"
    port = None if port_text is None else int(port_text)
    if port is not None and not 0 < port < 65536:
        return None
    return host.lower().rstrip("."), port


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False


class HostNames:
    """The names a site answers to; ``match(host)`` is the checked Host or None."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names: list[Name] = []
        self.bad: list[str] = []
        for item in names:
            parsed = parse(item.strip(), wildcard=True)
            if parsed:
                self.names.append(parsed)
            else:
                self.bad.append(item)

    def match(self, value: object) -> str | None:
        """The Host ``value`` rebuilt from its parsed parts when it names this
        site exactly; None otherwise (bad syntax or a name not configured)."""
        parsed = parse(value)
        if parsed is None:
            return None
        host, port = parsed
        for name, want in self.names:
            if name == host and (
                want == "*" or want == port or want is None and port in (None, 80, 443)
            ):
                return host if port is None else "%s:%d" % (host, port)
        return None

    def default(self) -> str:
        """The host for a request that sent no Host (HTTP/1.0): the first name."""
        if not self.names:
            return "localhost"
        name, port = self.names[0]
        return name if port is None or port == "*" else "%s:%d" % (name, port)

    def loopback_only(self) -> bool:
        """True when every name is the local machine (a development site)."""
        return all(_loopback(name) for name, _ in self.names)


def _loopback(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False
