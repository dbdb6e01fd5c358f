# -*- coding: utf-8 -*-
"""Checks every request gets before a form or page sees it, and the headers
every page carries.

A NUL in a registration field reached the database driver and became a
ticket (PostgreSQL refuses NUL in text); a field given twice became a list
where a validator expects a string. Both are answered here with a 400 and a
sentence. ``FRAME_HEADERS`` forbid framing (clickjacking the dashboard).
"""

from gluon.http import HTTP

FRAME_HEADERS = {"X-Frame-Options": "DENY",
                 "Content-Security-Policy": "frame-ancestors 'none'"}
_ALLOWED_CONTROLS = "\t\n\r"


def refuse(status, text):
    """Stop the request with ``status`` and ``text`` (plain text), framing
    headers included."""
    headers = dict(FRAME_HEADERS)
    headers["Content-Type"] = "text/plain; charset=utf-8"
    raise HTTP(status, text + "\n", **headers)


def bad_character(text):
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


def check_request(request, multi=()):
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
                problem = isinstance(item, str) and bad_character(item)
                if problem:
                    refuse(400, "The field %s contains %s, which is not accepted."
                           % (name[:40], problem))
