"""RFC 2920 PIPELINING and RFC 3030 CHUNKING on an ``smtplib.SMTP`` connection.

smtplib awaits each reply: MAIL, every RCPT, DATA and the end of data cost a
round trip each. When the server advertises PIPELINING, ``Pipeline.sendmail()``
writes MAIL, the RCPTs and DATA at once and reads their replies together, then
sends the content: two round trips a message. Told the next message
(``then``), it builds that one while the server reads this content and sends
its MAIL, RCPTs and DATA before reading the reply (RFC 2920 lets content open
a group), so in a run of messages each costs one round trip. When the server
offers CHUNKING, a message goes whole with its envelope as ``BDAT <size>
LAST``: one round trip too.

``sendmail()`` returns and raises exactly what ``smtplib.SMTP.sendmail`` does
for the same replies (the same exceptions with the same codes, texts and
recipients), so ``smtp.classify`` treats every error as before.
"""

import re
import smtplib
from collections.abc import Sequence

from .base import PLAIN_ADDRESS_RE, Next

# What the server said: (code, text), as smtplib's getreply() returns it.
Reply = tuple[int, bytes]

# Bigger messages go with DATA: BDAT sends the content before the replies to
# MAIL and RCPT are read, so a refused message would cross the wire in vain,
# and beyond this size the round trip saved is small beside the transfer.
CHUNK_LIMIT = 256 * 1024

_DOT_RE = re.compile(rb"^\.", re.M)


def supported(conn: smtplib.SMTP) -> bool:
    """True when the server (as its last EHLO reply said) takes pipelining."""
    return bool(conn.does_esmtp and conn.has_extn("pipelining"))


class Pipeline:
    """Pipelined sending on one connection.

    ``ahead`` is the message (sender, recipients, data) whose MAIL, RCPTs and
    DATA went out after the previous content, replies unread: the server takes
    whatever comes next as its content. So the next ``sendmail()`` must be for
    exactly that message (``expects()``), or the connection must be closed
    without a word (``smtp.SmtpTransport`` does): the server then drops that
    message, as it never saw its end.
    """

    def __init__(self, conn: smtplib.SMTP) -> None:
        self.conn = conn
        self.chunking = conn.has_extn("chunking")
        self.ahead: tuple[str, list[str], bytes] | None = None
        self.reply: Reply | None = None  # what the server said to the last message

    def expects(self, sender: str, recipients: Sequence[str], data: bytes) -> bool:
        """True when nothing is under way, or this very message is."""
        return self.ahead is None or self.ahead == (sender, list(recipients), data)

    def sendmail(
        self, sender: str, recipients: Sequence[str], data: bytes, then: Next | None = None
    ) -> dict[str, Reply]:
        """Send ``data`` (bytes, CRLF line ends); {refused: (code, text)}.
        ``then``: a function making the (sender, recipients, data) the caller
        sends next, or None (see transport.Transport.send)."""
        conn = self.conn
        if self.ahead is None:
            conn.send(self._start(sender, recipients, data))
        self.ahead = None
        code, text = conn.getreply()
        if code != 250:
            _end_early(conn, code, len(recipients) + 1)
            raise smtplib.SMTPSenderRefused(code, text, sender)
        refused = _recipients(conn, recipients)
        if len(refused) == len(recipients):
            _end_early(conn, None, 1)
            raise smtplib.SMTPRecipientsRefused(refused)
        if any(code == 452 for code, _ in refused.values()):
            then = None  # the rest of the recipients go next (smtp._rest)
        code, text = conn.getreply()  # to BDAT, or to DATA
        if not self._chunked(data):
            if code != 354:
                raise smtplib.SMTPDataError(code, text)  # as smtplib.SMTP.data()
            code, text = self._content(data, then)
        if code != 250:
            if self.ahead is None or code == 421:  # else the next message is
                _close_or_reset(conn, code)  # under way: no RSET between
            raise smtplib.SMTPDataError(code, text)
        self.reply = code, text
        return refused

    def _chunked(self, data: bytes) -> bool:
        return self.chunking and len(data) <= CHUNK_LIMIT

    def _start(self, sender: str, recipients: Sequence[str], data: bytes) -> bytes:
        """What opens a message: its envelope, then DATA, or BDAT and all of it."""
        envelope = _envelope(self.conn, sender, recipients, len(data))
        if self._chunked(data):
            return envelope + b"BDAT %d LAST\r\n" % len(data) + data
        return envelope + b"data\r\n"

    def _content(self, data: bytes, then: Next | None) -> Reply:
        """Send the content, then make the next message while the server
        reads it and send its start (unless it goes with BDAT, whole, so on
        its own); the reply to the content."""
        self.conn.send(_dot_stuffed(data))
        following = then() if then is not None else None
        if following is not None and not self._chunked(following[2]):
            try:
                start = self._start(*following)
            except ValueError:  # a command smtplib refuses too: that message
                return self.conn.getreply()  # fails on its own turn
            self.ahead = (following[0], list(following[1]), following[2])
            self.conn.send(start)
        return self.conn.getreply()


def _command(conn: smtplib.SMTP, verb: str, args: str) -> bytes:
    """One command line as smtplib's putcmd() makes it (same checks)."""
    line = "%s %s" % (verb, args)
    if "\r" in line or "\n" in line:
        raise ValueError("command and arguments contain prohibited newline characters: %r" % line)
    return (line + "\r\n").encode(conn.command_encoding)


def _envelope(conn: smtplib.SMTP, sender: str, recipients: Sequence[str], size: int) -> bytes:
    """MAIL FROM (with SIZE when offered, as smtplib) and a RCPT TO each."""
    option = " size=%d" % size if conn.has_extn("size") else ""
    lines = [_command(conn, "mail", "FROM:%s%s" % (quoteaddr(sender), option))]
    lines += [_command(conn, "rcpt", "TO:%s" % quoteaddr(r)) for r in recipients]
    return b"".join(lines)


def quoteaddr(address: str) -> str:
    """smtplib.quoteaddr(address), quicker for plain addresses."""
    if PLAIN_ADDRESS_RE.fullmatch(address):
        return "<%s>" % address
    return smtplib.quoteaddr(address)


def _recipients(conn: smtplib.SMTP, recipients: Sequence[str]) -> dict[str, Reply]:
    """Read a reply per RCPT: the refused ones. A 421 ends the session, as
    smtplib ends it (SMTPRecipientsRefused with those refused so far)."""
    refused: dict[str, Reply] = {}
    for address in recipients:
        code, text = conn.getreply()
        if code not in (250, 251):
            refused[address] = (code, text)
        if code == 421:
            conn.close()
            raise smtplib.SMTPRecipientsRefused(refused)
    return refused


def _end_early(conn: smtplib.SMTP, code: int | None, pending: int) -> None:
    """The message stops before its content: read the ``pending`` replies
    still due (to the RCPTs, then to DATA or BDAT) so the session stays in
    step, then close (421) or reset it, as smtplib does."""
    if code == 421:
        conn.close()
        return
    try:
        for _ in range(pending):
            code, _ = conn.getreply()
        if code == 354:  # DATA taken with no recipient: an empty message
            conn.send(b".\r\n")  # ends it (RFC 2920, 3.1); the server refuses it
            code, _ = conn.getreply()
    except smtplib.SMTPServerDisconnected:
        return  # gone (smtplib closed it): the refusal read first stands
    _close_or_reset(conn, code)


def _close_or_reset(conn: smtplib.SMTP, code: int | None) -> None:
    if code == 421:
        conn.close()
        return
    try:
        conn.rset()
    except smtplib.SMTPServerDisconnected:
        pass


def _dot_stuffed(data: bytes) -> bytes:
    """The content as smtplib.SMTP.data() sends it: dots doubled, CRLF.CRLF.
    The search for a line that starts with a dot costs a tenth of what the
    substitution's scan does, and most mail has none."""
    if data.startswith(b".") or b"\n." in data:
        data = _DOT_RE.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"
