"""Links in account mail: the site's public address, or a checked Host.

A reset or verification link built from an unchecked Host header hands its
key to whoever sent the request with a host name of their own. So every
absolute link Auth puts in a mail starts with ``public_url`` when one is
configured; without it, with the request's Host, and only after
``select_host`` has parsed that Host strictly and matched it exactly
against the configured names (hostnames.py).
"""

from collections.abc import Sequence
from typing import Any

from gluon.html import URL

from .authbase import AuthBase
from .hostnames import LOOPBACK_NAMES, HostNames, parse
from .requestcheck import refuse


def public_link(public_url: str, path: str) -> str:
    """``path`` (from URL()) on the configured public address, e.g.
    ``https://eden.example.net`` or ``https://example.net/prefix``; a bare
    host name means https."""
    if "://" not in public_url:
        public_url = "https://" + public_url
    return public_url.rstrip("/") + path


class LinksMixin(AuthBase):
    """Auth's absolute links on ``outbox_public_url``, else a checked Host."""

    outbox_public_url: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """``public_url`` (keyword): with it, any well-formed Host is served
        when ``host_names`` is empty, since links do not use the Host."""
        self._init_public_url: str | None = kwargs.pop("public_url", None)
        super().__init__(*args, **kwargs)

    def select_host(self, host: str | None, host_names: Sequence[str] | None = None) -> str | None:
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

    def url(
        self, f: str | None = None, args: Any = None, vars: Any = None, scheme: Any = False
    ) -> str:
        """Auth's links; absolute ones (those that go in mail) use public_url."""
        if scheme and self.outbox_public_url:
            return public_link(
                self.outbox_public_url,
                URL(c=self.settings.controller, f=f, args=args or [], vars=vars or {}),
            )
        return super().url(f=f, args=args, vars=vars, scheme=scheme)

    def link(
        self,
        c: str,
        f: str,
        args: Sequence[object] | None = None,
        vars: dict[str, object] | None = None,
    ) -> str:
        """An absolute link for a mail body: public_url, else this request's host."""
        if self.outbox_public_url:
            return public_link(
                self.outbox_public_url, URL(c=c, f=f, args=args or [], vars=vars or {})
            )
        return URL(
            c=c, f=f, args=args or [], vars=vars or {}, scheme=True, host=self.settings.host
        )  # checked by select_host
