"""The wire bytes of a message, written directly for the common shapes.

Building a MIME tree and running the email generator over it was about 40%
of a delivery worker's CPU (issue 14). ``message_bytes()`` writes the bytes
of ``message.wire(message.build(...))`` itself for a text, an HTML or a
text-and-HTML message without attachments, raw text or DKIM, and hands every
other message to the email package. The header folding (and RFC 2047) stays
the email package's: each header goes through the wire policy's fold, as
the generator does. tests/unit/test_wire.py checks the bytes against the
email package's byte for byte.
"""

import datetime
import functools
import logging
from collections.abc import Iterable
from email.header import Header

from .email_internals import boundary as draw_boundary
from .message import UTF8, WIRE_POLICY, DkimKey, Message, build, header, headers, wire

logger = logging.getLogger("s3outbox")

# The MIME headers MIMENonMultipart sets on a text part, and the
# Content-Transfer-Encoding _text_part adds, as the generator writes them.
_PART = (
    'Content-Type: text/%s; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n"
)
_PLAIN, _HTML = _PART % "plain", _PART % "html"


def message_bytes(
    msg: Message,
    sender: str,
    message_id: str,
    date: datetime.datetime,
    dkim: DkimKey | None = None,
) -> bytes:
    """``wire(build(msg, sender, message_id, date, dkim))``, the same bytes.

    A stored message the writer does not expect (a value of the wrong type,
    text that cannot be UTF-8) goes to the email package too, which raises
    its own error for it; so does a message the writer fails on for a bug,
    logged."""
    if not (dkim or msg.raw or msg.attachments):
        try:
            text = _written(msg, sender, message_id, date)
        except Exception:  # never lose a message to the writer: the package writes it
            logger.warning(
                "the wire writer failed on %s; the email package writes it",
                message_id,
                exc_info=True,
            )
            text = None
        if text is not None:
            # as BytesGenerator.write encodes what it writes
            return text.encode("ascii", "surrogateescape")
    return wire(build(msg, sender, message_id, date, dkim))


def _written(msg: Message, sender: str, message_id: str, date: datetime.datetime) -> str | None:
    """The text of a text, HTML or text-and-HTML message; None for other
    shapes (no body at all)."""
    text, html = msg.text, msg.html
    if text is not None and html:
        parts = (_PLAIN + "\r\n" + _body(text), _HTML + "\r\n" + _body(html))
        return _alternative(parts, _folded(headers(msg, sender, message_id, date)))
    if text is not None:
        mime, body = _PLAIN, _body(text)
    elif html:
        mime, body = _HTML, _body(html)
    else:
        return None
    return "%s%s\r\n%s" % (mime, _folded(headers(msg, sender, message_id, date)), body)


def _alternative(parts: tuple[str, str], own: str) -> str:
    """A multipart/alternative of the two written parts, with ``own`` headers.

    The boundary is drawn as the generator draws it, without the text: the
    check it makes against the text cannot fail here, since quoted-printable
    writes '=' as '=3D' and so never has the '==' that starts every
    boundary."""
    boundary = draw_boundary()
    mime = WIRE_POLICY.fold("Content-Type", 'multipart/alternative; boundary="%s"' % boundary)
    delimiter = "--" + boundary
    return "%sMIME-Version: 1.0\r\n%s\r\n%s\r\n%s\r\n%s\r\n%s\r\n%s--\r\n" % (
        mime,
        own,
        delimiter,
        parts[0],
        delimiter,
        parts[1],
        delimiter,
    )


def _folded(pairs: Iterable[tuple[str, str | Header]]) -> str:
    """The header lines as the generator writes them with the wire policy
    (its fold_binary is this fold, encoded at the end here)."""
    return "".join(
        _fold_encoded(name, str(value))
        if value.__class__ is Header
        else WIRE_POLICY.fold(name, value)
        for name, value in pairs
    )


@functools.lru_cache(maxsize=256)
def _fold_encoded(name: str, text: str) -> str:
    """The folded RFC 2047 header of non-ASCII ``text``, 40 us for a short
    subject, kept for the bulk mail that sends one subject many times. The
    Header values of headers() are all header(text), whose str() is text."""
    return WIRE_POLICY.fold(name, header(text))


def _body(text: str) -> str:
    """A text part's body as the generator writes it: the quoted-printable
    of its UTF-8 (as _text_part makes it) with CRLF line ends. (Writing a
    body that needs no quoting as it is saves only 1.5 of the 4.5 us that
    encoding a 1,000-byte one costs.)"""
    data = text.encode("utf-8")
    return UTF8.body_encode(data).replace("\n", "\r\n") if data else ""
