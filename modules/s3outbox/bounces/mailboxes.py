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


def parse(url):
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


def label(url):
    """The mailbox URL without its password, for pages and logs."""
    try:
        scheme, host, port, user, _, folder = parse(url)
    except ValueError:
        return "(a bounce_mailbox that is not a usable URL)"
    return "%s://%s@%s:%d/%s" % (scheme, urllib.parse.quote(user), host, port, folder)


def password(url):
    """The password in ``url`` (to mask it wherever text is shown), or ''."""
    try:
        return parse(url)[4]
    except ValueError:
        return ""


def open_mailbox(url, timeout=30, context=None):
    """A connected, logged-in Imap or Pop; MailboxError with a sentence."""
    scheme, host, port, user, secret, folder = parse(url)
    box = (Imap if scheme.startswith("imap") else Pop)(url, timeout)
    try:
        box.connect(scheme, host, port, context or ssl.create_default_context())
        box.login(user, secret, folder)
    except LINE_ERRORS as e:
        box.close()
        raise MailboxError("%s: %s" % (label(url), _clean(e, secret))) from None
    return box


def _clean(exc, secret):
    text = "%s: %s" % (type(exc).__name__, exc)
    return text.replace(secret, "********") if secret else text


class Imap:
    """A folder over IMAP; a message is ``UIDVALIDITY:UID``."""

    def __init__(self, url, timeout):
        self.url, self.timeout, self.conn, self.validity = url, timeout, None, None
        self.exists = 0

    def connect(self, scheme, host, port, context):
        if scheme == "imaps":
            self.conn = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=self.timeout)
        else:
            self.conn = imaplib.IMAP4(host, port, timeout=self.timeout)
            self.conn.starttls(context)

    def login(self, user, secret, folder):
        self.conn.login(user, secret)
        typ, data = self.conn.select(_quoted(folder))
        if typ != "OK":
            raise imaplib.IMAP4.error("cannot open folder %r" % folder)
        if not isinstance(data[0], bytes) or not data[0].isdigit():  # RFC 3501 requires it
            raise imaplib.IMAP4.error(
                "folder %r: the server did not say how many messages it holds" % folder
            )
        self.exists = int(data[0])
        self.validity = (self.conn.untagged_responses.get("UIDVALIDITY") or [b"0"])[-1]
        self.validity = self.validity.decode("ascii", "replace")

    def messages(self):
        """[(ref, size)] of the folder's messages, oldest first."""
        if not self.exists:
            return []
        with _broken():
            typ, data = self.conn.uid("FETCH", "1:*", "(RFC822.SIZE)")
        found = []
        for item in data or ():
            m = re.search(rb"UID (\d+)", item or b"")
            n = re.search(rb"RFC822\.SIZE (\d+)", item or b"")
            if m and n:
                found.append(("%s:%s" % (self.validity, m.group(1).decode()), int(n.group(1))))
        return found

    def head(self, ref, size):
        """The first READ_LIMIT bytes of message ``ref`` (not marked seen)."""
        uid = ref.partition(":")[2]
        with _broken():
            typ, data = self.conn.uid("FETCH", uid, "(BODY.PEEK[]<0.%d>)" % READ_LIMIT)
        for item in data or ():
            if isinstance(item, tuple):
                return item[1]
        return b""

    def delete(self, ref):
        with _broken():
            self.conn.uid("STORE", ref.partition(":")[2], "+FLAGS", "(\\Deleted)")

    def close(self):
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

    def __init__(self, url, timeout):
        self.url, self.timeout, self.conn, self.numbers = url, timeout, None, {}

    def connect(self, scheme, host, port, context):
        if scheme == "pop3s":
            self.conn = poplib.POP3_SSL(host, port, context=context, timeout=self.timeout)
        else:
            self.conn = poplib.POP3(host, port, timeout=self.timeout)
            self.conn.stls(context)

    def login(self, user, secret, folder):
        self.conn.user(user)
        self.conn.pass_(secret)

    def messages(self):
        with _broken():
            uidls = self.conn.uidl()[1]
            sizes = dict(line.split()[:2] for line in self.conn.list()[1])
        found = []
        for line in uidls:
            number, uid = line.decode("ascii", "replace").split()[:2]
            self.numbers[uid] = number
            found.append((uid, int(sizes.get(number.encode(), 0))))
        return found

    def head(self, ref, size):
        number = self.numbers[ref]
        try:
            with _broken():
                if size <= READ_LIMIT:
                    lines = self.conn.retr(number)[1]
                else:
                    lines = self.conn.top(number, POP_LINES)[1]
        except Broken as e:
            if "line too long" in str(e):
                raise Unreadable(str(e)) from None
            raise
        return b"\r\n".join(lines)[:READ_LIMIT]

    def delete(self, ref):
        with _broken():
            self.conn.dele(self.numbers[ref])

    def close(self):
        if self.conn is None:
            return
        try:
            self.conn.quit()
        except LINE_ERRORS:
            _shut(self.conn)
        self.conn = None


class _broken:
    """Turn a failure of the connection into Broken (the pass stops)."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None and isinstance(exc, LINE_ERRORS):
            raise Broken("%s: %s" % (type(exc).__name__, exc)) from exc
        return False


def _shut(conn):
    """Close the socket of a session that could not end politely."""
    try:
        conn.sock.close()
    except OSError:
        pass  # already gone: nothing is left to close


def _quoted(folder):
    return '"%s"' % folder.replace("\\", "\\\\").replace('"', '\\"')
