"""The mailbox that delivery reports reach, over IMAP or POP3, always with TLS.

One setting names it as a URL: ``imaps://user:password@host[:993][/FOLDER]``
(implicit TLS), ``imap://...`` (STARTTLS, required), ``pop3s://...:995`` or
``pop3://...`` (STLS, required); user and password percent-encoded as in any
URL. ``label()`` is the URL without its password: the only form that is shown
or logged. Every message is read through ``head()``, at most ``READ_LIMIT``
bytes of it, so a huge message costs no more than a small one.
"""

import imaplib
import poplib
import re
import ssl
import urllib.parse
from types import TracebackType
from typing import Literal

READ_LIMIT = 512 * 1024  # bytes of a message read: a report's status part is early
POP_LINES = 500  # POP3 TOP: lines of the body read of a bigger message
SCHEMES = {"imaps": 993, "imap": 143, "pop3s": 995, "pop3": 110}
# What a failing line or server raises through imaplib and poplib.
LINE_ERRORS = (OSError, EOFError, imaplib.IMAP4.error, poplib.error_proto)


class MailboxError(Exception):
    """The mailbox cannot be used (settings, refused login, connection gone)."""


class Broken(MailboxError):
    """The connection failed while reading: stop this pass, nothing is lost."""


class Unreadable(Broken):
    """This message cannot be read over this protocol (a POP3 line longer
    than poplib takes); the connection is out of step: stop this pass."""


def parse(url: str | None) -> tuple[str, str, int, str, str, str]:
    """(scheme, host, port, user, password, folder); ValueError with a
    sentence (never the password) when the URL cannot be used."""
    try:
        u = urllib.parse.urlsplit(url or "")
        port = u.port
    except ValueError:
        raise ValueError("bounce_mailbox is not a URL like imaps://user:password@host") from None
    if u.scheme not in SCHEMES:
        raise ValueError(
            "bounce_mailbox must start imaps://, imap://, pop3s:// or pop3:// (got %r)" % u.scheme
        )
    if not u.hostname or not u.username or u.password is None:
        raise ValueError(
            "bounce_mailbox needs a user, a password and a host: "
            "%s://user:password@host" % u.scheme
        )
    folder = urllib.parse.unquote(u.path.lstrip("/")) or "INBOX"
    if u.scheme.startswith("pop3") and folder != "INBOX":
        raise ValueError("bounce_mailbox: POP3 has no folders (%r)" % folder)
    return (
        u.scheme,
        u.hostname,
        port or SCHEMES[u.scheme],
        urllib.parse.unquote(u.username),
        urllib.parse.unquote(u.password),
        folder,
    )


def label(url: str | None) -> str:
    """The mailbox URL without its password, for pages and logs."""
    try:
        scheme, host, port, user, _, folder = parse(url)
    except ValueError:
        return "(a bounce_mailbox that is not a usable URL)"
    return "%s://%s@%s:%d/%s" % (scheme, urllib.parse.quote(user), host, port, folder)


def password(url: str | None) -> str:
    """The password in ``url`` (to mask it wherever text is shown), or ''."""
    try:
        return parse(url)[4]
    except ValueError:
        return ""


def open_mailbox(
    url: str | None, timeout: float = 30, context: ssl.SSLContext | None = None
) -> "Imap | Pop":
    """A connected, logged-in Imap or Pop; MailboxError with a sentence."""
    scheme, host, port, user, secret, folder = parse(url)
    box: Imap | Pop = (Imap if scheme.startswith("imap") else Pop)(url, timeout)
    try:
        box.connect(scheme, host, port, context or ssl.create_default_context())
        box.login(user, secret, folder)
    except LINE_ERRORS as e:
        box.close()
        raise MailboxError("%s: %s" % (label(url), _clean(e, secret))) from None
    return box


def _clean(exc: BaseException, secret: str) -> str:
    text = "%s: %s" % (type(exc).__name__, exc)
    return text.replace(secret, "********") if secret else text


class Imap:
    """A folder over IMAP; a message is ``UIDVALIDITY:UID``."""

    def __init__(self, url: str | None, timeout: float) -> None:
        self.url, self.timeout = url, timeout
        self.conn: imaplib.IMAP4 | None = None
        self.validity: str | None = None
        self.exists = 0

    @property
    def _line(self) -> imaplib.IMAP4:
        assert self.conn is not None  # open_mailbox() connected it; close() comes last
        return self.conn

    def connect(self, scheme: str, host: str, port: int, context: ssl.SSLContext) -> None:
        if scheme == "imaps":
            self.conn = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=self.timeout)
        else:
            self.conn = imaplib.IMAP4(host, port, timeout=self.timeout)
            self.conn.starttls(context)

    def login(self, user: str, secret: str, folder: str) -> None:
        self._line.login(user, secret)
        typ, data = self._line.select(_quoted(folder))
        if typ != "OK":
            raise imaplib.IMAP4.error("cannot open folder %r" % folder)
        if not isinstance(data[0], bytes) or not data[0].isdigit():  # RFC 3501 requires it
            raise imaplib.IMAP4.error(
                "folder %r: the server did not say how many messages it holds" % folder
            )
        self.exists = int(data[0])
        validity = (self._line.untagged_responses.get("UIDVALIDITY") or [b"0"])[-1]
        assert isinstance(validity, bytes)  # a response code's value, never a literal
        self.validity = validity.decode("ascii", "replace")

    def messages(self) -> list[tuple[str, int]]:
        """[(ref, size)] of the folder's messages, oldest first."""
        if not self.exists:
            return []
        with _broken():
            typ, data = self._line.uid("FETCH", "1:*", "(RFC822.SIZE)")
        found = []
        for item in data or ():
            m = re.search(rb"UID (\d+)", item or b"")
            n = re.search(rb"RFC822\.SIZE (\d+)", item or b"")
            if m and n:
                found.append(("%s:%s" % (self.validity, m.group(1).decode()), int(n.group(1))))
        return found

    def head(self, ref: str, size: int) -> bytes:
        """The first READ_LIMIT bytes of message ``ref`` (not marked seen)."""
        uid = ref.partition(":")[2]
        with _broken():
            typ, data = self._line.uid("FETCH", uid, "(BODY.PEEK[]<0.%d>)" % READ_LIMIT)
        for item in data or ():
            if isinstance(item, tuple):
                return item[1]
        return b""

    def delete(self, ref: str) -> None:
        with _broken():
            self._line.uid("STORE", ref.partition(":")[2], "+FLAGS", "(\\Deleted)")

    def close(self) -> None:
        """Expunge what was deleted and log out; quiet if the line is gone."""
        if self.conn is None:
            return
        try:
            if self.conn.state == "SELECTED":
                self.conn.expunge()
            self.conn.logout()
        except LINE_ERRORS:
            _shut(self.conn)
        self.conn = None


class Pop:
    """A POP3 mailbox; a message is its UIDL. Deletions happen at QUIT only,
    so a connection lost mid-read deletes nothing."""

    def __init__(self, url: str | None, timeout: float) -> None:
        self.url, self.timeout = url, timeout
        self.conn: poplib.POP3 | None = None
        self.numbers: dict[str, str] = {}

    @property
    def _line(self) -> poplib.POP3:
        assert self.conn is not None  # open_mailbox() connected it; close() comes last
        return self.conn

    def connect(self, scheme: str, host: str, port: int, context: ssl.SSLContext) -> None:
        if scheme == "pop3s":
            self.conn = poplib.POP3_SSL(host, port, context=context, timeout=self.timeout)
        else:
            self.conn = poplib.POP3(host, port, timeout=self.timeout)
            self.conn.stls(context)

    def login(self, user: str, secret: str, folder: str) -> None:
        self._line.user(user)
        self._line.pass_(secret)

    def messages(self) -> list[tuple[str, int]]:
        with _broken():
            uidls = self._line.uidl()[1]
            sizes = dict(line.split()[:2] for line in self._line.list()[1])
        found = []
        for line in uidls:
            number, uid = line.decode("ascii", "replace").split()[:2]
            self.numbers[uid] = number
            found.append((uid, int(sizes.get(number.encode(), 0))))
        return found

    def head(self, ref: str, size: int) -> bytes:
        number = self.numbers[ref]
        try:
            with _broken():
                if size <= READ_LIMIT:
                    lines = self._line.retr(number)[1]
                else:
                    lines = self._line.top(number, POP_LINES)[1]
        except Broken as e:
            if "line too long" in str(e):
                raise Unreadable(str(e)) from None
            raise
        return b"\r\n".join(lines)[:READ_LIMIT]

    def delete(self, ref: str) -> None:
        with _broken():
            self._line.dele(self.numbers[ref])

    def close(self) -> None:
        if self.conn is None:
            return
        try:
            self.conn.quit()
        except LINE_ERRORS:
            _shut(self.conn)
        self.conn = None


class _broken:
    """Turn a failure of the connection into Broken (the pass stops)."""

    def __enter__(self) -> "_broken":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        if exc is not None and isinstance(exc, LINE_ERRORS):
            raise Broken("%s: %s" % (type(exc).__name__, exc)) from exc
        return False


def _shut(conn: imaplib.IMAP4 | poplib.POP3) -> None:
    """Close the socket of a session that could not end politely."""
    try:
        conn.sock.close()
    except OSError:
        pass  # already gone: nothing is left to close


def _quoted(folder: str) -> str:
    return '"%s"' % folder.replace("\\", "\\\\").replace('"', '\\"')
