"""Reading delivery reports: RFC 3464 delivery status notifications, and the
common non-standard bounces (qmail, Exim and Exchange styles) that quote the
original message's Message-ID and an SMTP or enhanced status code.

``read(data, tokens)`` never raises: mail that is not a report, or that it
cannot make sense of, gives None. What it finds is only a claim: bounces.py
decides whether the claim names a message of ours (a TOKEN whose MAC holds,
or a Message-ID the outbox gave, for one of that message's recipients).
"""

import dataclasses
import email
import email.header
import email.policy
import logging
import re
from collections.abc import Hashable, Iterable
from email.message import Message
from typing import TypeVar

logger = logging.getLogger("s3outbox")
_T = TypeVar("_T", bound=Hashable)

MAX_PARTS = 200  # MIME parts looked at; a report has three
MAX_TEXT = 1000  # characters of a diagnostic kept
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"(?:^|said:|:)\s*([45][0-5]\d)(?=[\s-])", re.M)
_MESSAGE_ID = re.compile(r"^[ \t>]*Message-ID:[ \t]*(<[^<>\s]{3,250}>)", re.I | re.M)
_RECIPIENT = re.compile(r"<([^<>\s@]{1,64}@[^<>\s]{1,255})>:")
_ADDRESS = re.compile(r"[^\s<>;\"]{1,64}@[^\s<>;\"]{1,255}")
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status|fail|notification|has failed|problem)|returned "
    r"mail|failure notice|mail delivery|non.?delivery|could not be delivered",
    re.I,
)
_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")
# Headers of the report itself that carry the address it was sent to.
_ENVELOPE_HEADERS = (
    "to",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "x-envelope-to",
    "x-rcpt-to",
)


@dataclasses.dataclass
class Failure:
    """One recipient's failure as a report states it."""

    recipient: str  # '' when the report names none
    status: str  # enhanced status code, e.g. '5.1.1'
    diagnostic: str  # the remote server's words, trimmed
    code: int | None = None  # the SMTP reply code in the diagnostic, when there is one

    @property
    def permanent(self) -> bool:
        return self.status.startswith("5")


@dataclasses.dataclass
class Report:
    """What a report claims: the messages it is about and the failures."""

    tokens: list[tuple[int, str]]  # (row id, mac) found in the addresses it was sent to
    message_ids: list[str]  # Message-IDs of the original, as quoted
    failures: list[Failure]
    standard: bool  # an RFC 3464 report, or a non-standard bounce


def read(data: bytes, tokens: re.Pattern[str] | None) -> Report | None:
    """The Report in ``data`` (bytes), or None; ``tokens`` is the TOKEN regex
    (returnpath.token_pattern) or None."""
    try:
        return _read(data, tokens)
    except Exception as e:  # hostile MIME must never stop the reader
        logger.info(
            "bounces: a message could not be parsed: %s: %s",
            type(e).__name__,
            str(e)[:200],
            exc_info=True,
        )
        return None


def _read(data: bytes, tokens: re.Pattern[str] | None) -> Report | None:
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    parts = _parts(msg)
    failures: list[Failure] = []
    found_ids: list[str] = []
    texts: list[str] = []
    status_text: list[str] = []
    for part in parts:
        kind = part.get_content_type()
        if kind in ("message/delivery-status", "message/global-delivery-status"):
            text = _text(part)
            status_text.append(text)
            failures += _status_part(text)
        elif kind in (
            "message/rfc822",
            "text/rfc822-headers",
            "message/global",
            "message/global-headers",
        ):
            found_ids += _MESSAGE_ID.findall(_text(part))
        elif kind.startswith("text/") and not part.is_multipart():
            texts.append(_text(part))
    standard = bool(status_text)
    if not standard:
        if not _looks_like_bounce(msg):
            return None
        body = "\n".join(texts)
        found_ids += _MESSAGE_ID.findall(body)
        failures = _plain_failures(body)
    if not failures:
        return None
    where = [str(v) for h in _ENVELOPE_HEADERS for v in msg.get_all(h) or ()]
    where += (
        status_text
        + [
            _text(p)
            for p in parts
            if p.get_content_type() in ("message/rfc822", "text/rfc822-headers")
        ][:1]
    )
    found = [] if tokens is None else tokens.findall("\n".join(where))
    return Report(
        tokens=_unique([(int(i), mac.lower()) for i, mac in found]),
        message_ids=_unique(found_ids),
        failures=failures,
        standard=standard,
    )


def _parts(msg: Message) -> list[Message]:
    """The message's parts (the message itself first), at most MAX_PARTS,
    not descending into a returned message (its parts are the original's)."""
    out: list[Message] = []
    todo = [msg]
    while todo and len(out) < MAX_PARTS:
        part = todo.pop(0)
        out.append(part)
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            todo.extend(p for p in part.get_payload() if isinstance(p, Message))
    return out


def _text(part: Message) -> str:
    """A part's content as text, whatever its encoding (lenient)."""
    payload = part.get_payload()
    if isinstance(payload, list):  # message/* parsed into messages: their fields
        return "\n\n".join(_fields(p) for p in payload)
    raw = part.get_payload(decode=True)
    if raw is None:
        return str(payload)
    assert isinstance(raw, bytes)  # a part that is not multipart decodes to bytes
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw.decode(charset, "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


def _fields(msg: object) -> str:
    """A parsed block's header fields as text, as they came (as_string()
    would encode 8-bit values as =?unknown-8bit?...?=)."""
    if not hasattr(msg, "items"):
        return str(msg)
    return "\n".join("%s: %s" % (k, _value(v)) for k, v in msg.items())


def _value(value: object) -> str:
    """A header value as text; 8-bit bytes read as UTF-8."""
    if isinstance(value, email.header.Header):
        return "".join(
            part.decode("utf-8", "replace") if isinstance(part, bytes) else part
            for part, _ in email.header.decode_header(value)
        )
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _status_part(text: str) -> list[Failure]:
    """The failures in a delivery-status part: its per-recipient blocks with
    Action failed or delayed (delivered, relayed, expanded are not failures)."""
    blocks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    failures = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        fields = email.message_from_string(block.strip() + "\n\n", policy=email.policy.compat32)
        action = str(fields.get("Action", "")).strip().lower()
        if action not in ("failed", "delayed"):
            continue
        m = _STATUS.search(str(fields.get("Status", "")))
        status = m.group(0) if m else ("5.0.0" if action == "failed" else "4.0.0")
        if action == "delayed" and status.startswith("5"):
            status = "4" + status[1:]
        diagnostic = _one_line(fields.get("Diagnostic-Code", "") or status)
        recipient = _address(fields.get("Original-Recipient")) or _address(
            fields.get("Final-Recipient")
        )
        failures.append(Failure(recipient, status, diagnostic, _code(diagnostic)))
    return failures


def _plain_failures(body: str) -> list[Failure]:
    """A non-standard bounce's failure: the first enhanced status code (or
    else SMTP reply code) and the line it is on, with the recipient quoted
    as ``<address>:`` if there is one."""
    m = _STATUS.search(body)
    if m is None or m.group(1) == "2":
        m = _SMTP_CODE.search(body)
        if m is None:
            return []
        status = "%s.0.0" % m.group(1)[0]
    else:
        status = m.group(0)
    start = body.rfind("\n", 0, m.start()) + 1
    end = body.find("\n", m.end())
    line = _one_line(body[start : end if end >= 0 else len(body)])
    who = _RECIPIENT.search(body)
    return [Failure(who.group(1).lower() if who else "", status, line, _code(line))]


def _looks_like_bounce(msg: Message) -> bool:
    """A message from a mailer daemon, or whose subject says it is one."""
    sender = str(msg.get("From", "")).lower()
    return any(d in sender for d in _DAEMONS) or bool(
        _BOUNCE_SUBJECT.search(str(msg.get("Subject", "")))
    )


def _address(value: object) -> str:
    """The address of a recipient field ('rfc822; bob@x.net'), lower case."""
    m = _ADDRESS.search(str(value or "").partition(";")[2] or str(value or ""))
    return m.group(0).lower().strip(".") if m else ""


def _code(diagnostic: str) -> int | None:
    m = re.search(r"(?:^|;|\s)([245]\d\d)(?=[\s-]|$)", diagnostic)
    return int(m.group(1)) if m else None


def _one_line(text: object) -> str:
    """``text`` on one line, without control or direction-changing characters
    (which could make a page say something else), at most MAX_TEXT long."""
    text = re.sub(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]+", " ", str(text))
    return re.sub(r"\s{2,}", " ", text).strip()[:MAX_TEXT]


def _unique(items: Iterable[_T]) -> list[_T]:
    seen: set[_T] = set()
    out: list[_T] = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
