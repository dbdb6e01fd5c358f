"""The admin's parameters, from the dashboard's pages and forms and from
the command line, checked in one place so both refuse the same input: a bad
one raises ``BadParameter`` with a sentence, which the dashboard answers with
a 400 and the command line with a one-line error.
"""

import posixpath
import urllib.parse

from ..accounts.requestcheck import bad_character

MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL and MariaDB
MAX_DAYS = 36500  # a century; beyond it the cutoff date overflows
MAX_LIST = 1000  # messages one command-line listing shows at most


class BadParameter(ValueError):
    """A dashboard or command-line parameter that is refused, with why."""


def whole_number(value: object, name: str, low: int = 0, high: int = MAX_ID) -> int:
    """``value`` (text from a form or a command line) as an int from ``low``
    to ``high``: ASCII digits only (``str.isdigit`` also takes '²'), no sign
    or space (in a URL ``?before=+5`` is ' 5')."""
    if isinstance(value, (list, tuple)):
        raise BadParameter("%s was given more than once" % name)
    text = _text(value, name)
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise BadParameter("%s must be a whole number from %d to %d" % (name, low, high))
    return int(text)


def one_text(value: object, name: str, max_length: int = 255) -> str | None:
    """``value`` as one line of text; None when empty."""
    if isinstance(value, (list, tuple)):
        raise BadParameter("%s was given more than once" % name)
    text = _text("" if value is None else value, name).strip()
    problem = bad_character(text)
    if problem or "\n" in text or "\r" in text:
        raise BadParameter("%s contains %s" % (name, problem or "a line break"))
    if len(text) > max_length:
        raise BadParameter("%s is longer than %d characters" % (name, max_length))
    return text or None


def _text(value: object, name: str) -> str:
    """A parameter as text; a file part (a form field sent as an upload) is
    refused: its truth value and str() are not its content."""
    if not isinstance(value, (str, int)):
        raise BadParameter("%s must be text, not a file" % name)
    return str(value)


def local_next(value: object, prefix: str, default: str) -> str:
    """``value`` (a ``_next`` from a form) if it is a path on this site
    under ``prefix``, judged after normalising it as a browser would (``..``
    and ``.`` segments, also percent-encoded; a backslash is a slash);
    otherwise ``default``. Returned normalised, with its query."""
    if not isinstance(value, str) or not value.startswith("/") or "\\" in value:
        return default
    parts = urllib.parse.urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    path = posixpath.normpath(urllib.parse.unquote(parts.path))
    if not (path + "/").startswith(prefix) or path.startswith("//"):
        return default
    path = urllib.parse.quote(path + ("/" if parts.path.endswith("/") else ""))
    return path + ("?" + parts.query if parts.query else "")
