"""What a person typed, put into mail text.

Names (``first_name``, ``last_name``) reach the approver's mail and the
welcome mail. A line or paragraph separator, a bidi override or a control
character in a name could forge lines there or hide text, so names are put
on one line, in the forms and again in the templates. web2py's translator
escapes ``%``, ``{`` and ``}`` in place in the dict it is given, and Auth
gives it ``form.vars`` itself: ``SafeT`` makes its messages work on a copy,
so an address such as ``a%b@x.net`` reaches the mail as it was typed.
"""

import copyreg
import re
import unicodedata
from typing import Any

from gluon.languages import lazyT, pickle_lazyT
from pydal.objects import Row

from ..delivery.store import Row as StoredRow

# Form fields whose values are names that end up in mail text.
NAME_FIELDS = ("first_name", "last_name")
# Control, format (bidi overrides, zero-width), line and paragraph separators,
# surrogates, private use, unassigned.
_STRIP_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
_SPACES = re.compile(r"\s+")


def clean_name(value: object) -> str | None:
    """A name on one line: control and separator characters become spaces."""
    if value is None:
        return value
    text = "".join(" " if unicodedata.category(c) in _STRIP_CATEGORIES else c for c in str(value))
    return _SPACES.sub(" ", text).strip()


def render_values(user: StoredRow, link: str) -> dict[str, object]:
    """A user's fields for a mail template: names on one line, and the link."""
    values = dict(user.as_dict(), link=link)
    for name in NAME_FIELDS:
        values[name] = clean_name(values.get(name)) or ""
    return values


class _SafeLazyT(lazyT):
    """A translation whose ``%`` works on a copy: web2py's translator escapes
    ``%``, ``{`` and ``}`` in place in the dict it is given, and Auth passes
    ``form.vars`` itself, so ``a%b@x.net`` became ``a\x1db@x.net`` before
    the verification mail was addressed."""

    def __mod__(self, symbols: object) -> lazyT:
        # A pydal Row too (Eden's verify_email logs ``message % user``): the
        # translator takes anything but a dict as positional values.
        if isinstance(symbols, (dict, Row)):
            symbols = dict(symbols)
        return lazyT.__mod__(self, symbols)


# Pickled as a lazyT is (a session keeps its flash): as the text it shows.
copyreg.pickle(_SafeLazyT, pickle_lazyT)


class SafeT:
    """Wraps a translator so the messages it makes are ``_SafeLazyT``."""

    def __init__(self, T: Any) -> None:
        self._T = T

    def __call__(self, *args: Any, **kwargs: Any) -> object:
        value = self._T(*args, **kwargs)
        if isinstance(value, lazyT):  # lazyT(value) would be a copy, which drops %
            return _SafeLazyT(value.m, value.s, value.T, value.f, value.t, value.M)
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._T, name)
