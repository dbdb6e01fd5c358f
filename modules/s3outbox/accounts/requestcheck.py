"""Checks every request gets before a form or page sees it, and the headers
every page carries.

A NUL in a registration field reached the database driver and became a
ticket (PostgreSQL refuses NUL in text); a field given twice became a list
where a validator expects a string. Both are answered here with a 400 and a
sentence. ``FRAME_HEADERS`` forbid framing (clickjacking the dashboard).

``check_body`` runs first, before anything reads ``request.vars``: web2py
parses a form body lazily, on first use, with ``cgi.FieldStorage`` and then
looks each field up by a linear search, so parsing costs the square of the
number of fields (measured on this machine: 1,000 fields 0.06 s urlencoded and
0.16 s multipart, 5,000 fields 1.1 s and 2.7 s; 100,000 kept a core busy for
over ten minutes). Counting the separators in the raw body is linear. A
file part where a form takes text made validators and the dashboard raise:
it is refused too.
"""

from collections.abc import Collection
from email.message import Message
from typing import IO, Any, Literal, NoReturn

from gluon.http import HTTP

FRAME_HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
_ALLOWED_CONTROLS = "\t\n\r"
# Far above any real form (the dashboard's longest list is 200 ticked
# messages), far below a costly parse (see above).
MAX_FIELDS = 1000
MAX_BODY = 2**20
# Eden takes uploads (photos, documents, spreadsheets to import).
EDEN_MAX_BODY = 64 * 2**20
# Fields of the account pages and the dashboard: never a file, whatever page
# they come to (where other fields may carry an upload, as in Eden).
TEXT_FIELDS = frozenset(
    (
        "_next",
        "_formkey",
        "_formname",
        "email",
        "username",
        "password",
        "password_two",
        "old_password",
        "new_password",
        "new_password2",
        "first_name",
        "last_name",
        "status",
        "days",
        "to",
        "ids",
        "decision",
    )
)
_CHUNK = 2**20
# gluon's request and its env (Storage): no type information.
Request = Any


def refuse(status: int, text: str) -> NoReturn:
    """Stop the request with ``status`` and ``text`` (plain text), framing
    headers included."""
    headers = dict(FRAME_HEADERS)
    headers["Content-Type"] = "text/plain; charset=utf-8"
    raise HTTP(status, text + "\n", **headers)


def bad_character(text: str) -> str | None:
    """A description of the first character a form value may not hold, or None:
    C0 controls but tab and line breaks, DEL, and undecodable bytes.

    web2py decodes a query or form body with replacement characters, so bytes
    that are not UTF-8 arrive as U+FFFD (or, decoded otherwise, as
    surrogates). A U+FFFD typed on purpose is refused too: it only ever stands
    for text already lost, and a 400 says so where storing it would not."""
    for c in text:
        code = ord(c)
        if (code < 32 and c not in _ALLOWED_CONTROLS) or code == 127:
            return "a control character (U+%04X)" % code
        if 0xD800 <= code <= 0xDFFF or code == 0xFFFD:
            return "bytes that are not UTF-8"
    return None


def check_request(request: Request, multi: Collection[str] | Literal[True] = ()) -> None:
    """Refuse (400) a parameter given more than once (unless its name is in
    ``multi``; ``multi=True``: any may repeat) or holding a character no form
    accepts."""
    for where in (request.get_vars, request.post_vars):
        for name, value in where.items():
            problem = bad_character(str(name))
            if problem:
                refuse(400, "A parameter name contains %s." % problem)
            if isinstance(value, list):
                if multi is not True and name not in multi:
                    refuse(400, "The field %s was given more than once." % name[:40])
                values = value
            else:
                values = [value]
            for item in values:
                problem = bad_character(item) if isinstance(item, str) else None
                if problem:
                    refuse(
                        400,
                        "The field %s contains %s, which is not accepted." % (name[:40], problem),
                    )


def check_body(
    request: Request, max_fields: int = MAX_FIELDS, max_body: int = MAX_BODY, uploads: bool = False
) -> None:
    """Refuse (413) a body over ``max_body`` bytes or with ``max_fields``
    field separators or more, before web2py parses it, then (400) a file part in a field that
    takes text: in any field unless ``uploads``, else in ``TEXT_FIELDS``."""
    env = request.env
    length = str(env.content_length or "0").strip()
    if not (length.isascii() and length.isdigit()):
        refuse(400, "Bad Content-Length header: it must be a number of bytes.")
    if max_body and int(length) > max_body:
        refuse(413, "The request is %s bytes; this site takes at most %d." % (length, max_body))
    separator = _field_separator(env)
    if (
        separator
        and max_fields
        and int(length) > max_fields
        and _count(request.body, separator) >= max_fields
    ):
        refuse(
            413,
            "The request has more than %d form fields; no form here has that many." % max_fields,
        )
    for name, value in request.post_vars.items():
        values = value if isinstance(value, list) else [value]
        if any(getattr(v, "filename", None) is not None for v in values) and (
            not uploads or name in TEXT_FIELDS
        ):
            refuse(400, "The field %s was sent as a file; it takes text." % str(name)[:40])


def _field_separator(env: Any) -> bytes | None:
    """What starts each field in a form body (urlencoded '&', multipart its
    boundary line), or None for a body web2py does not split into fields."""
    if (env.request_method or "").upper() not in ("POST", "PUT", "DELETE", "BOTH"):
        return None
    header = Message()
    header["content-type"] = env.content_type or ""
    kind = header.get_content_type()
    if kind == "application/x-www-form-urlencoded":
        return b"&"
    boundary = header.get_param("boundary")
    if kind.startswith("multipart/") and isinstance(boundary, str):
        return b"--" + boundary.encode("latin-1", "replace")
    return None


def _count(body: IO[bytes], separator: bytes) -> int:
    """Occurrences of ``separator`` in the file ``body``, read in chunks."""
    found, tail = 0, b""
    body.seek(0)
    while True:
        chunk = body.read(_CHUNK)
        if not chunk:
            break
        data = tail + chunk
        found += data.count(separator)
        # Keep what could be the start of a separator cut by the chunk edge.
        tail = data[-(len(separator) - 1) :] if len(separator) > 1 else b""
    body.seek(0)
    return found
