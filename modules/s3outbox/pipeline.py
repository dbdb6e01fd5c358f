# -*- coding: utf-8 -*-
"""RFC 2920 PIPELINING and RFC 3030 CHUNKING on an ``smtplib.SMTP`` connection.

smtplib awaits each reply: MAIL, every RCPT, DATA and the end of data cost a
round trip each. When the server advertises PIPELINING, ``sendmail()`` writes
MAIL, the RCPTs and DATA at once and reads their replies together, then sends
the content: two round trips a message. When it also offers CHUNKING, the
content follows in the same write as ``BDAT <size> LAST``: one round trip.

``sendmail()`` returns and raises exactly what ``smtplib.SMTP.sendmail`` does
for the same replies (the same exceptions with the same codes, texts and
recipients), so ``smtp.classify`` treats every error as before.
"""

import re
import smtplib

# Bigger messages go with DATA: BDAT sends the content before the replies to
# MAIL and RCPT are read, so a refused message would cross the wire in vain,
# and beyond this size the round trip saved is small beside the transfer.
CHUNK_LIMIT = 256 * 1024

_DOT_RE = re.compile(rb"^\.", re.M)


def supported(conn):
    """True when the server (as its last EHLO reply said) takes pipelining."""
    return bool(conn.does_esmtp and conn.has_extn("pipelining"))


def sendmail(conn, sender, recipients, data):
    """Send ``data`` (bytes, CRLF line ends) pipelined; {refused: (code, text)}."""
    chunked = conn.has_extn("chunking") and len(data) <= CHUNK_LIMIT
    envelope = _envelope(conn, sender, recipients, len(data))
    if chunked:
        conn.send(envelope + b"BDAT %d LAST\r\n" % len(data) + data)
    else:
        conn.send(envelope + b"data\r\n")
    code, text = conn.getreply()
    if code != 250:
        _end_early(conn, code, len(recipients) + 1)
        raise smtplib.SMTPSenderRefused(code, text, sender)
    refused = _recipients(conn, recipients)
    if len(refused) == len(recipients):
        _end_early(conn, None, 1)
        raise smtplib.SMTPRecipientsRefused(refused)
    code, text = conn.getreply()  # to BDAT, or to DATA
    if not chunked:
        if code != 354:
            raise smtplib.SMTPDataError(code, text)  # as smtplib.SMTP.data()
        conn.send(_dot_stuffed(data))
        code, text = conn.getreply()
    if code != 250:
        _close_or_reset(conn, code)
        raise smtplib.SMTPDataError(code, text)
    return refused


def _command(conn, verb, args):
    """One command line as smtplib's putcmd() makes it (same checks)."""
    line = "%s %s" % (verb, args)
    if "\r" in line or "\n" in line:
        raise ValueError("command and arguments contain prohibited newline "
                         "characters: %r" % line)
    return (line + "\r\n").encode(conn.command_encoding)


def _envelope(conn, sender, recipients, size):
    """MAIL FROM (with SIZE when offered, as smtplib) and a RCPT TO each."""
    option = " size=%d" % size if conn.has_extn("size") else ""
    lines = [_command(conn, "mail", "FROM:%s%s" % (smtplib.quoteaddr(sender), option))]
    lines += [_command(conn, "rcpt", "TO:%s" % smtplib.quoteaddr(r)) for r in recipients]
    return b"".join(lines)


def _recipients(conn, recipients):
    """Read a reply per RCPT: the refused ones. A 421 ends the session, as
    smtplib ends it (SMTPRecipientsRefused with those refused so far)."""
    refused = {}
    for address in recipients:
        code, text = conn.getreply()
        if code not in (250, 251):
            refused[address] = (code, text)
        if code == 421:
            conn.close()
            raise smtplib.SMTPRecipientsRefused(refused)
    return refused


def _end_early(conn, code, pending):
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


def _close_or_reset(conn, code):
    if code == 421:
        conn.close()
        return
    try:
        conn.rset()
    except smtplib.SMTPServerDisconnected:
        pass


def _dot_stuffed(data):
    """The content as smtplib.SMTP.data() sends it: dots doubled, CRLF.CRLF."""
    data = _DOT_RE.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"
