"""The message: what send() accepts, how it is checked, and how it is rebuilt.

``normalize()`` turns the arguments of ``Mail.send`` into a ``Message`` of
strings and tuples that the store keeps as readable JSON (no pickle).
``build()`` turns a stored message back into the MIME message that web2py's
``Mail.send`` would have built for the same arguments, with two differences
on the wire: ``wire()`` folds header lines longer than 78 characters (RFC
5322), where Mail.send writes every header on one line (``as_string()``
does not fold, so a long subject can exceed SMTP's 998-character line limit);
and address headers encode each display name on its own (see _addresses).
A parser reads the same headers from both.
"""

import dataclasses
import datetime
import email.message
import email.utils
import functools
import io
import json
import re
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from email.charset import QP, Charset, add_charset
from email.header import Header, decode_header, make_header
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from typing import IO, Any, Protocol, TypedDict

from ..transport.base import PLAIN_ADDRESS_RE
from .email_internals import set_encoded_payload

# web2py's Mail.send registers this so that UTF-8 bodies use quoted-printable
# rather than base64; do the same so our MIME matches theirs.
add_charset("utf-8", QP, QP, "utf-8")
UTF8 = Charset("utf-8")


class InvalidMessage(ValueError):
    """send() arguments that cannot become a message; the text is for people."""


# send()'s arguments as Mail.send takes them (normalize() checks whatever
# comes). Text: a str, bytes in the message's encoding, or a file to read.
Text = str | bytes | IO[str] | IO[bytes]
Addresses = str | Sequence[str] | None
# The body: its text (an <html> document is the HTML), (text, html), or
# None for attachments alone.
Body = Text | tuple[Text | None, Text | None] | None
Attachments = email.message.Message | Sequence[email.message.Message] | None


# A deliberately plain address check: one @, no spaces or specials, a dotted
# domain of letters, digits and hyphens (IDN labels are accepted as Unicode).
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
_LABEL = r"(?:[^\W_]|[^\W_][\w-]{0,61}[^\W_])"
# \Z, not $: "$" also matches before a final newline ("a@b.net\n").
ADDRESS_RE = re.compile(r"\A%s@%s(?:\.%s)+\Z" % (_LOCAL, _LABEL, _LABEL), re.UNICODE)
# Every character that str.splitlines() breaks at: email's header folding
# splits there, so any of them would start a new header line on the wire.
_BAD_HEADER_CHARS = re.compile(r"[\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_HEADER_NAME_RE = re.compile(r"\A[!-9;-~]+\Z")  # printable ASCII without ':'
# List-Unsubscribe's one <mailto:...>: an address, then optionally RFC 6068's
# ?hfields in URI characters, without '<', '>', ',' or spaces, which would
# end the URI or start another one.
_UNSUBSCRIBE_RE = re.compile(
    r"%s@%s(?:\.%s)+(?:\?[A-Za-z0-9._~%%!$'()*+;:@=&/?-]*)?" % (_LOCAL, _LABEL, _LABEL), re.UNICODE
)

# Headers send() sets itself; a caller's ``headers`` may not override them.
_RESERVED_HEADERS = {
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
}


def _text(value: object, encoding: str, what: str) -> str | None:
    """A str from str, bytes or a file-like object (Mail.send reads those);
    None for None. A file that reads as neither text nor bytes is refused."""
    if type(value) is str or value is None:
        return value
    if not isinstance(value, (str, bytes)):
        if not hasattr(value, "read"):
            raise InvalidMessage("%s must be text, not %s" % (what, type(value).__name__))
        value = value.read()
    if isinstance(value, bytes):
        try:
            value = value.decode(encoding)
        except (UnicodeDecodeError, LookupError) as e:
            raise InvalidMessage("%s is not valid %s: %s" % (what, encoding, e)) from None
    if not isinstance(value, str):
        raise InvalidMessage("%s must be text, not %s" % (what, type(value).__name__))
    return value


def _header_value(value: object, encoding: str, what: str) -> str | None:
    if value is None:
        return None
    value = _text(value, encoding, what)
    if value is not None and _BAD_HEADER_CHARS.search(value):
        raise InvalidMessage("%s contains a line break or NUL, which could inject headers" % what)
    return value


def parse_addresses(value: object, encoding: str = "utf-8", what: str = "recipient") -> list[str]:
    """A list of 'Name <addr>' strings from a str or a list of str.

    A string may hold several comma-separated addresses. Each must be a single
    well-formed address; anything else raises InvalidMessage.
    """
    if value is None or value == "" or value == [] or value == ():
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list[str] = []
    for item in items:
        if type(item) is str and PLAIN_ADDRESS_RE.fullmatch(item):
            out.append(item)  # what the checks below make of it, at a tenth the cost
            continue
        item = _header_value(item, encoding, what)
        if item is None or not item.strip():
            continue
        for name, addr in email.utils.getaddresses([item]):
            # getaddresses glues stray words onto an address ('a@b.net 0'
            # gives 'a@b.net0'): only an address written as it is counts.
            if not addr or not ADDRESS_RE.match(addr) or addr not in item:
                raise InvalidMessage("%s %r is not a valid e-mail address" % (what, item))
            if len(addr) > 254 or len(addr.rpartition("@")[0]) > 64:
                raise InvalidMessage(
                    "%s %r is longer than SMTP allows (254 characters, "
                    "64 before the @)" % (what, item)
                )
            if not bare(addr).isascii():
                raise InvalidMessage(
                    "%s %r has a domain that cannot be written in ASCII (IDNA)" % (what, item)
                )
            out.append(email.utils.formataddr((name, bare(addr))) if name else addr)
    return out


def bare(address: object) -> str:
    """The addr-spec of 'Name <addr>': what goes into MAIL FROM and RCPT TO,
    with an internationalised domain in its ASCII (IDNA) form, since SMTP
    commands are ASCII. A setting of another type (sender = 42) has none:
    the settings check names it."""
    if not isinstance(address, str):
        return ""
    if PLAIN_ADDRESS_RE.fullmatch(address):
        return address
    addr = _parsed(address)[1]
    local, at, domain = addr.rpartition("@")
    if at and not domain.isascii():
        try:
            return "%s@%s" % (local, domain.encode("idna").decode("ascii"))
        except UnicodeError:
            pass
    return addr


@functools.lru_cache(maxsize=256)
def _parsed(address: str) -> tuple[str, str]:
    """parseaddr(), kept for the few senders that send nearly all the mail."""
    return email.utils.parseaddr(address)


def _fits(value: str | None, limit: int, what: str) -> str | None:
    """Refuse what its column cannot hold: MySQL would cut it silently."""
    if value is not None and len(value) > limit:
        raise InvalidMessage(
            "%s is too long (%d characters, at most %d)" % (what, len(value), limit)
        )
    return value


class Attachment(TypedDict):
    """A stored attachment: a Mail.Attachment (``file``) or any MIME part
    (``part``, kept whole as its bytes)."""

    kind: str
    filename: str | None
    content_type: str | None
    content_id: str | None
    payload: bytes


def _attachment(part: object, encoding: str) -> Attachment:
    """A stored attachment (dict) from a Mail.Attachment or any MIME part."""
    if not isinstance(part, email.message.Message):
        raise InvalidMessage(
            "attachments must be Mail.Attachment objects, not %s" % type(part).__name__
        )
    if hasattr(part, "my_payload") and hasattr(part, "my_filename"):
        payload = part.my_payload
        if isinstance(payload, str):
            payload = payload.encode(encoding)
        cid = _header_value(part.get("Content-Id"), encoding, "attachment content_id")
        return Attachment(
            kind="file",
            filename=_fits(
                _header_value(part.my_filename, encoding, "attachment filename"),
                255,
                "attachment file name",
            ),
            # the whole value: Mail.Attachment puts a charset on text
            content_type=_fits(part.get("Content-Type"), 128, "attachment content type"),
            content_id=_fits(
                cid[1:-1] if cid and cid.startswith("<") else cid, 255, "attachment content_id"
            ),
            payload=payload,
        )
    return Attachment(
        kind="part",
        filename=_fits(part.get_filename(), 255, "attachment file name"),
        content_type=_fits(part.get_content_type(), 128, "attachment content type"),
        content_id=None,
        payload=part.as_bytes(),
    )


@dataclasses.dataclass(frozen=True)
class Message:
    """A checked message, as plain data: never changed once ``normalize()``
    made it (``dataclasses.replace`` makes another, as delivery does when it
    resolves a pe_id's address). Addresses are 'Name <addr>' strings."""

    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    reply_to: tuple[str, ...]
    sender: str | None
    from_address: str | None
    subject: str
    text: str | None
    html: str | None
    headers: dict[str, str]
    raw: bool
    attachments: tuple[Attachment, ...] = ()  # rows of their own
    size: int = 0  # bytes of bodies and attachments, for max_size

    def recipients(self) -> list[str]:
        """Every envelope recipient (to, cc and bcc), as SMTP takes them."""
        return [bare(a) for a in self.to + self.cc + self.bcc]

    def first_address(self) -> str | None:
        """The first recipient's address, or None: what an admin searches for."""
        first = (self.to or self.cc or self.bcc or (None,))[0]
        return first and bare(first)

    def to_json(self) -> str:
        """The stored form: the fields above but attachments and size."""
        return dumps(
            {
                "to": self.to,
                "cc": self.cc,
                "bcc": self.bcc,
                "reply_to": self.reply_to,
                "sender": self.sender,
                "from_address": self.from_address,
                "subject": self.subject,
                "text": self.text,
                "html": self.html,
                "headers": self.headers,
                "raw": self.raw,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "Message":
        """The Message stored as ``text``; ValueError (or KeyError) if it
        is not one."""
        data = json.loads(text)
        values = {name: data[name] for name in _STORED}
        for name in ("to", "cc", "bcc", "reply_to"):
            value = values[name]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("%s is not a list of addresses" % name)
            values[name] = tuple(value)
        if not isinstance(values["headers"], dict):
            raise ValueError("headers is not a mapping")
        return cls(**values)


_STORED = (
    "to",
    "cc",
    "bcc",
    "reply_to",
    "sender",
    "from_address",
    "subject",
    "text",
    "html",
    "headers",
    "raw",
)


def normalize(
    to: object = None,
    subject: object = "[no subject]",
    message: object = "[no message]",
    attachments: object = None,
    cc: object = None,
    bcc: object = None,
    reply_to: object = None,
    sender: object = None,
    encoding: str = "utf-8",
    raw: object = False,
    headers: Mapping[str, object] | None = None,
    from_address: object = None,
    list_unsubscribe: object = None,
    pe_id: object = None,
    max_size: int | None = None,
) -> Message:
    """Check send() arguments and return the Message.

    Raises InvalidMessage with a sentence a site admin can act on.
    """
    if encoding != "utf-8":
        try:
            "".encode(encoding)
        except (LookupError, TypeError):
            raise InvalidMessage("unknown encoding %r" % (encoding,)) from None
    to_list, cc_list, bcc_list = _recipients(to, cc, bcc, pe_id, encoding)
    reply_list = tuple(parse_addresses(reply_to, encoding, "reply_to address"))
    sender = _fits(_header_value(sender, encoding, "sender") or None, 512, "sender")
    if sender and not parse_addresses(sender, encoding, "sender"):
        raise InvalidMessage("sender %r is not a valid e-mail address" % sender)
    from_address = _header_value(from_address, encoding, "from_address") or None
    subject = _header_value(subject, encoding, "subject") or ""
    extra = _headers(headers, list_unsubscribe, encoding)
    text, html = _bodies(message, raw, attachments, encoding)
    parts: tuple[Attachment, ...] = ()
    if attachments is not None and not raw:
        items = attachments if isinstance(attachments, (list, tuple)) else [attachments]
        parts = tuple(_attachment(a, encoding) for a in items)
    size = _utf8_size(text) + _utf8_size(html)
    if parts:
        size += sum(len(p["payload"]) for p in parts)
    if max_size and size > max_size:
        raise InvalidMessage(
            "the message is %d bytes, over the outbox limit of %d "
            "bytes (mail.settings.max_size)" % (size, max_size)
        )
    return Message(
        to_list,
        cc_list,
        bcc_list,
        reply_list,
        sender,
        from_address,
        subject,
        text,
        html,
        extra,
        bool(raw),
        parts,
        size,
    )


def _utf8_size(text: str | None) -> int:
    """Bytes of ``text`` in UTF-8, without encoding it when it is ASCII."""
    if not text:
        return 0
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _recipients(
    to: object, cc: object, bcc: object, pe_id: object, encoding: str
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(to, cc, bcc) checked; at least one address, or an integer pe_id."""
    found = (
        tuple(parse_addresses(to, encoding, "recipient")),
        tuple(parse_addresses(cc, encoding, "cc address")),
        tuple(parse_addresses(bcc, encoding, "bcc address")),
    )
    if not any(found) and pe_id is None:
        raise InvalidMessage("no recipient: give 'to' (or cc/bcc) or a pe_id")
    if pe_id is not None and (isinstance(pe_id, bool) or not isinstance(pe_id, int)):
        raise InvalidMessage("pe_id must be an integer, not %r" % (pe_id,))
    return found


def _headers(
    headers: Mapping[str, object] | None, list_unsubscribe: object, encoding: str
) -> dict[str, str]:
    """The caller's extra headers, checked, with List-Unsubscribe."""
    if not headers and list_unsubscribe is None:
        return {}
    unsubscribe = unsubscribe_header(list_unsubscribe, encoding)
    extra: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _HEADER_NAME_RE.match(name) or len(name) > 70:
            raise InvalidMessage(
                "header name %r is not a valid header name (printable "
                "ASCII without ':', at most 70 characters)" % (name,)
            )
        if name.lower() in _RESERVED_HEADERS:
            raise InvalidMessage("header %r is set by send() itself; use its argument" % name)
        text = value if isinstance(value, (str, bytes)) else str(value)
        extra[name] = _header_value(text, encoding, "header %s" % name) or ""
    if unsubscribe:
        extra["List-Unsubscribe"] = unsubscribe
    return extra


def unsubscribe_header(list_unsubscribe: object, encoding: str = "utf-8") -> str | None:
    """The List-Unsubscribe value for ``list_unsubscribe`` (None for none);
    raises InvalidMessage unless it is one address."""
    address = _header_value(list_unsubscribe, encoding, "list_unsubscribe")
    if address and not _UNSUBSCRIBE_RE.fullmatch(address):
        raise InvalidMessage(
            "list_unsubscribe %r must be one e-mail address "
            "(optionally ?subject=...): it becomes <mailto:...>" % address
        )
    return "<mailto:%s>" % address if address else None


def _bodies(
    message: object, raw: object, attachments: object, encoding: str
) -> tuple[str | None, str | None]:
    """(text, html) from Mail.send's ``message``: a str (HTML when it is an
    <html> document), a (text, html) pair, or, raw, the whole text."""
    text = html = None
    if raw:
        if message is None:
            raise InvalidMessage("a raw message needs a body")
        text = _text(message, encoding, "message")
    elif isinstance(message, (list, tuple)):
        if len(message) != 2:
            raise InvalidMessage("message as a tuple must be (text, html)")
        text = _text(message[0], encoding, "text body")
        html = _text(message[1], encoding, "html body") or None
    elif message is not None:
        body = _text(message, encoding, "message") or ""
        if body.strip().startswith("<html") and body.strip().endswith("</html>"):
            html = body
        else:
            text = body
    if text is None and html is None and not attachments:
        raise InvalidMessage("the message has no body and no attachments")
    return text, html


def make_message_id(sender: object) -> str:
    """A new Message-ID in the sender's domain, shaped as make_msgid's.
    Its randomness comes from ``secrets``: make_msgid takes it from the
    ``random`` module, which an application (or a test framework) may
    reseed, and two messages then got the same id."""
    return "<%d.%s@%s>" % (
        time.time() * 100,
        secrets.token_hex(10),
        _domain(sender if isinstance(sender, str) else ""),
    )


@functools.lru_cache(maxsize=64)
def _domain(sender: str) -> str:
    """The Message-ID domain for ``sender``: the few senders of a site repeat.
    A sender no domain can be made of (a label too long for DNS) gives
    localhost: a setting never stops send(); the settings check names it."""
    domain = bare(sender).rpartition("@")[2] or "localhost"
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "localhost"


# A run of characters a header line cannot be folded within: text with one
# is encoded (RFC 2047), since encoded words fold where plain words cannot.
_LONG_WORD_RE = re.compile(r"\S{78}")


def header(value: str) -> str | Header:
    """Header text as Mail.send would set it; non-ASCII becomes RFC 2047, and
    so does a word too long to fit on a line (a 2,000-character subject would
    otherwise go out as one line, past SMTP's limit of 998)."""
    if not value.isascii() or _LONG_WORD_RE.search(value):
        return Header(value.encode("utf-8"), "utf-8")
    return value


def _addresses(values: Sequence[str]) -> str | Header:
    """An address header: each display name RFC 2047-encoded on its own and
    each domain in IDNA form. Mail.send encodes the whole value, addresses and
    all, which RFC 2047 forbids: strict parsers then find no address."""
    out = []
    for value in values:
        if PLAIN_ADDRESS_RE.fullmatch(value):
            out.append(value)  # what formataddr(("", value)) gives
            continue
        formatted = _formatted(value)
        if formatted is None:
            return header(", ".join(values))
        out.append(formatted)
    return ", ".join(out)


@functools.lru_cache(maxsize=256)
def _formatted(value: str) -> str | None:
    """'Name <addr>' as an address header writes it, or None if it is not
    one address; kept, as _parsed, for the senders that send most mail."""
    name, addr = _parsed(value)
    if not (addr and ADDRESS_RE.match(addr)):
        return None
    formatted = email.utils.formataddr((name, bare(addr)), charset="utf-8")
    if name and _LONG_WORD_RE.search(formatted.rpartition(" <")[0]):
        # a name that would not fold (one long word, or one long encoded
        # word): encoded words of at most 75 characters each instead
        if "=?" in name:  # send() stored a non-ASCII name encoded: decode it
            name = str(make_header(decode_header(name)))
        words = Header(name.encode("utf-8"), "utf-8").encode(linesep=" ")
        return "%s <%s>" % (words, bare(addr))
    return formatted


def _rebuild_attachment(stored: Attachment) -> email.message.Message:
    if stored["kind"] == "part":
        return email.message_from_bytes(stored["payload"])
    if stored["kind"] != "file":
        raise ValueError("unknown attachment kind %r" % (stored["kind"],))
    from gluon.tools import Mail

    return Mail.Attachment(
        io.BytesIO(stored["payload"]),
        filename=stored["filename"],
        content_id=stored["content_id"],
        content_type=stored["content_type"],
    )


class DkimKey(Protocol):
    """The DKIM setting: a Storage(key=..., selector=...) that signs."""

    key: str | bytes
    selector: str


def build(
    msg: Message,
    sender: str,
    message_id: str,
    date: datetime.datetime,
    dkim: DkimKey | None = None,
) -> email.message.Message:
    """The MIME message for Message ``msg``, shaped as Mail.send shapes it.

    ``date`` is an aware or UTC datetime fixed when the message was queued.
    """
    payload = _payload(msg)
    for name, value in headers(msg, sender, message_id, date):
        payload[name] = value  # type: ignore[assignment]  # compat32 takes a Header too
    if dkim:
        from gluon.tools import dkim_sign

        payload["DKIM-Signature"] = dkim_sign(payload, dkim.key, dkim.selector)
    return payload


def _date(date: datetime.datetime) -> str:
    """format_datetime(date): a drain sends runs of messages queued in the
    same second (created_on has no microseconds). The key holds the zone:
    12:00 UTC equals 13:00+01:00 but is written otherwise."""
    return _formatted_date(date, date.tzinfo)


@functools.lru_cache(maxsize=64)
def _formatted_date(date: datetime.datetime, tzinfo: datetime.tzinfo | None) -> str:
    return email.utils.format_datetime(date)


def headers(
    msg: Message, sender: str, message_id: str, date: datetime.datetime
) -> Iterator[tuple[str, str | Header]]:
    """The message's own headers (not the MIME ones) as build() sets them,
    in its order: (name, str or Header) pairs, made one at a time as build()
    made them (so a bad stored value fails as it did). Shared with
    wire.message_bytes."""
    yield "From", _addresses([msg.from_address or sender])
    if msg.to:
        yield "To", _addresses(msg.to)
    if msg.reply_to:
        yield "Reply-To", _addresses(msg.reply_to)
    if msg.cc:
        yield "Cc", _addresses(msg.cc)
    yield "Subject", header(msg.subject)
    yield "Date", _date(date)
    yield "Message-ID", message_id
    for name, value in msg.headers.items():
        yield name, header(value)


def _payload(msg: Message) -> email.message.Message:
    """The MIME tree: one text part (raw), or the body (text, html or an
    alternative of both) followed by the attachments in a mixed part."""
    text, html = msg.text, msg.html
    body: MIMEBase | None = None
    if msg.raw:
        body = None if text is None else MIMEText(text)
    elif text is not None and html:
        body = MIMEMultipart("alternative")
        body.attach(_text_part(text))
        body.attach(_text_part(html, "html"))
    elif text is not None:
        body = _text_part(text)
    elif html:
        body = _text_part(html, "html")
    if msg.raw or not msg.attachments:
        if body is None:  # normalize() never stores such a message
            raise ValueError("the stored message has no body")
        return body
    payload = MIMEMultipart("mixed")
    if body is not None:
        payload.attach(body)
    for stored in msg.attachments:
        payload.attach(_rebuild_attachment(stored))
    return payload


def _text_part(text: str, subtype: str = "plain") -> MIMENonMultipart:
    """MIMEText(text, subtype, _charset="utf-8"), the same object made
    directly: its set_charset() parses and rewrites the Content-Type it has
    just written, two thirds of the part's cost (tests/unit/test_message.py
    compares the bytes)."""
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    data = text.encode("utf-8")
    set_encoded_payload(part, UTF8.body_encode(data) if data else "", UTF8)
    part["Content-Transfer-Encoding"] = "quoted-printable"
    return part


# A header value that compat32 writes as it is: printable ASCII words with
# single spaces between them. Longer ones, or any other, are folded by Header.
_PLAIN_HEADER_RE = re.compile(r"[!-~]+(?: [!-~]+)*")


class _WirePolicy(Compat32):
    """compat32 (folding at 78 characters) that skips the Header folding
    machinery for plain short values, for which it returns ``name: value``
    unchanged: the bytes are what compat32 writes, and most headers of most
    messages are such values."""

    def _plain(self, name: str, value: str | Header) -> str | None:
        if (
            isinstance(value, str)
            and _PLAIN_HEADER_RE.fullmatch(value)
            and (not self.max_line_length or len(name) + 2 + len(value) <= self.max_line_length)
        ):
            return "%s: %s%s" % (name, value, self.linesep)
        return None

    def fold(self, name: str, value: str | Header) -> str:
        """What Generator writes for a header."""
        plain = self._plain(name, value)
        return plain if plain is not None else super().fold(name, value)  # type: ignore[arg-type]

    def fold_binary(self, name: str, value: str | Header) -> bytes:
        """What BytesGenerator (as_bytes) writes for a header."""
        plain = self._plain(name, value)
        if plain is not None:
            return plain.encode("ascii", "surrogateescape")  # as compat32 encodes its own
        return super().fold_binary(name, value)  # type: ignore[arg-type]


# SMTP needs CRLF line ends: smtplib sends bytes as they are, and a server
# reads a body with bare LF as one line (aiosmtpd: "500 Line too long").
WIRE_POLICY = _WirePolicy(linesep="\r\n")


def wire(payload: email.message.Message) -> bytes:
    """The bytes to hand to smtplib for a built message."""
    return payload.as_bytes(policy=WIRE_POLICY)


_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False
)  # stored values are plain data


def dumps(value: object) -> str:
    """Compact JSON that keeps non-ASCII text readable in the database."""
    return _ENCODER.encode(value)


def loads(value: str | bytes | None) -> Any:
    return json.loads(value) if value else None
