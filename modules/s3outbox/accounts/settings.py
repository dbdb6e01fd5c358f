"""The account-flow settings: limits on account mail, retention, and the
site's own address and names; read with the delivery settings, checked with
them, and joined to the core through its hook (delivery.settings.register),
with the account-flow tables (tables.py). docs/settings.md lists them.
"""

import urllib.parse
from collections.abc import Callable
from typing import Any

from gluon import storage

from ..delivery.settings import (
    Finding,
    Part,
    Problem,
    Storage,
    boolean,
    optional_text,
    read_raw,
    register,
    whole,
)
from . import tables
from .hostnames import HostNames

# On Mail.settings, for auth.py, flowlimit.py and retention.py.
DEFAULTS = dict(
    flow_window=3600,  # seconds of one rate-limit window
    flow_per_address=3,  # account mails of one flow to one address a window (0: no limit)
    flow_per_client=30,  # account-flow requests from one client network a window
    flow_global=300,  # reset and username mails of the whole site a window
    flow_global_register=300,  # registrations of the whole site a window
    flow_codes_per_address=10,  # two-step login codes to one address a window
    flow_reset_pending=900,  # seconds a reset link stays the only one for its account
    flow_trust_forwarded=False,  # client = last X-Forwarded-For (behind own proxy)
    secret_retention=3600,  # seconds after delivery before account mail is scrubbed
    sent_retention_days=30,  # sent mail is purged after this many days (0: never)
    public_url=None,  # [app] public_url: links in mail
    host_names=None,  # [host] names: the Host values the site answers to
    safety_errors=(),  # Problems: [outbox] values above that were refused
)
# The [outbox] keys (Eden: settings.mail.<key>), each with its reader.
READERS = {
    key: (boolean, False, False)
    if key == "flow_trust_forwarded"
    else (whole(1 if key == "flow_window" else 0, 10**9), DEFAULTS[key], False)
    for key in DEFAULTS
    if key not in ("public_url", "host_names", "safety_errors")
}
# A century at most: further back than that is before the calendar starts.
READERS["sent_retention_days"] = (whole(0, 36500), DEFAULTS["sent_retention_days"], False)
LIMITS = (
    "flow_per_address",
    "flow_per_client",
    "flow_global",
    "flow_global_register",
    "flow_codes_per_address",
)


def apply(s: Storage, get: Callable[[str], Any]) -> None:
    """``[outbox]`` limits and retention, ``[app] public_url`` and ``[host]
    names`` onto ``s``. A value that cannot be used keeps its default and is
    reported by ``findings``."""
    s.public_url = optional_text(get("app.public_url"))
    names = get("host.names")
    if names not in (None, "") and not isinstance(names, (str, int, float)):
        names = ",".join(str(n) for n in names)  # AppConfig: a map for "a, b"
    s.host_names = optional_text(names)
    bad: list[Problem] = []
    for key in READERS:
        s[key], problem = read_raw(key, get("outbox." + key))
        if problem is not None:
            bad.append(problem)
    s.safety_errors = bad


def findings(s: Storage) -> list[Finding]:
    """(appconfig key, advice, False) for the account-flow settings: never
    blocking, shown with the SMTP findings."""
    out = [p.finding() for p in s.get("safety_errors") or ()]
    names = HostNames([n for n in (s.host_names or "").split(",") if n.strip()])
    for item in names.bad:
        out.append(
            (
                "[host] names",
                "%r is not host, host:port or host:*; it is ignored" % item.strip(),
                False,
            )
        )
    if not s.public_url and names.names and not names.loopback_only():
        out.append(
            (
                "[app] public_url",
                "public_url is empty on a site that is not "
                "on loopback: links in mail use the request's Host (checked "
                "against [host] names); set the site's address",
                False,
            )
        )
    if s.public_url and not site_address(s.public_url):
        out.append(
            (
                "[app] public_url",
                "public_url = %r is not an http:// or https:// address with a host "
                "name (an internationalised one in its xn-- form): links in mail "
                "would not open" % s.public_url[:100],
                False,
            )
        )
    for key in LIMITS:
        if s.get(key) == 0:
            out.append(
                ("[outbox] %s" % key, "%s is 0: that limit on account mail is off" % key, False)
            )
    return out


def site_address(url: str) -> bool:
    """Whether ``url`` makes working links (links.public_link adds https://
    to a bare host): http or https, a host or host:port, nothing else but a
    path."""
    parts = urllib.parse.urlsplit(url if "://" in url else "https://" + url)
    return (
        parts.scheme in ("http", "https")
        and not (parts.query or parts.fragment or "@" in parts.netloc or "*" in parts.netloc)
        and bool(parts.netloc)
        and not HostNames([parts.netloc]).bad
    )


def summary(settings: Storage) -> str:
    """The account-mail limits and retention, in words, for the settings check."""
    s = storage.Storage(
        (key, default if settings.get(key) is None else settings.get(key))
        for key, default in DEFAULTS.items()
    )
    return (
        "account mail per %d s: %s an address, %s a client, %s the site, "
        "%s registrations the site; login codes: %s an address; "
        "one reset link per %d s; account mail scrubbed %d s after delivery; "
        "sent mail purged after %s"
        % (
            s.flow_window,
            s.flow_per_address or "no limit",
            s.flow_per_client or "no limit",
            s.flow_global or "no limit",
            s.flow_global_register or "no limit",
            s.flow_codes_per_address or "no limit",
            s.flow_reset_pending,
            s.secret_retention,
            "%d days" % s.sent_retention_days if s.sent_retention_days else "never",
        )
    )


register(
    Part(
        name="accounts",
        defaults=DEFAULTS,
        readers=READERS,
        keys=tuple(READERS),
        apply=apply,
        findings=findings,
        tables=tables.define,
    )
)
