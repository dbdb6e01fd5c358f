"""A web2py site's private/appconfig.ini, read so that no line an admin writes
gives every page a ticket.

gluon's AppConfig reads the file in the locale's encoding (the server runs in
the C locale: an accent failed), takes a lone '%' as interpolation, and
refuses the whole file over one malformed line or a key written twice. Here
the file is read as UTF-8, a lone '%' is taken as written, and each line that
cannot be read is named by its number (never its text, which may hold a
password) and left out, the rest read. The model turns the problems into
findings and log lines, and ``value`` reads one key with a settings reader.
"""

import configparser
from typing import Any

from .settings import Reader

Problem = tuple[str, str]  # (where: "line 7", "the whole file", "[db] uri"; what is wrong)
Settings = dict[str, dict[str, str]]


def read(path: str) -> tuple[Settings, list[Problem]]:
    """{section: {key: text}} of the file at ``path``, and its problems."""
    lines, unreadable = _lines(path)
    problems = _problems(lines)
    for n, _, left_out in problems:
        if left_out:
            lines[n - 1] = "\n"
    parser = configparser.ConfigParser(strict=False)
    try:
        parser.read_string("".join(lines))
    except configparser.Error as e:  # more problems than _problems reads
        parser = configparser.ConfigParser()
        unreadable = "it cannot be read (%s)" % type(e).__name__
    settings: Settings = {}
    for section in parser.sections():
        settings[section] = {}
        for option in parser.options(section):
            try:
                settings[section][option] = parser.get(section, option)
            except configparser.InterpolationError:
                settings[section][option] = parser.get(section, option, raw=True)
    named = [("line %d" % n, text) for n, text, _ in problems]
    return settings, named + ([("the whole file", unreadable)] if unreadable else [])


def value(
    settings: Settings,
    key: str,
    reader: Reader,
    default: Any,
    bad: Any = None,
    then: str | None = None,
) -> tuple[Any, Problem | None]:
    """``[section] key`` (``key`` is "section.key") as ``reader`` reads its
    text; empty: ``default``. A value it cannot read gives ``bad`` (else
    ``default``) and the problem, ``then`` saying what that means."""
    section, _, name = key.partition(".")
    # dict.get: gluon's AppConfigDict (a dict) makes its own get a dotted path
    text = str((dict.get(settings, section) or {}).get(name, "")).strip()
    if not text:
        return default, None
    try:
        return reader(text), None
    except ValueError:
        used = default if bad is None else bad
        problem = "%s = %s cannot be used: expected %s; %s" % (
            name,
            text[:40],
            reader.expected,
            then or "%s is used" % str(used).lower(),
        )
        return used, ("[%s] %s" % (section, name), problem)


def _lines(path: str) -> tuple[list[str], str | None]:
    """The file's lines, and why it cannot be read, or None."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines(keepends=True), None
    except OSError as e:
        return [], "the file cannot be read (%s)" % (e.strerror or type(e).__name__)


def _problems(lines: list[str]) -> list[tuple[int, str, bool]]:
    """[(line number, what is wrong, the line is left out)]: a line that is
    not ``key = value`` or before the first [section] is left out; of a key
    given twice, the last is used; a [section] given again joins the first."""
    probe, found = list(lines), []
    for _ in range(200):  # one problem a reading; a file is not that broken
        try:
            configparser.ConfigParser(strict=False).read_string("".join(probe))
            break
        except configparser.MissingSectionHeaderError as e:
            bad = [e.lineno]
            what = "a line before the first [section]: it is ignored"
        except configparser.ParsingError as e:
            bad = [n for n, _ in e.errors]
            what = "not key = value, [section] or a ; comment: it is ignored"
        found += [(n, what, True) for n in bad]
        for n in bad:
            probe[n - 1] = "\n"
    return found + _repeats(probe)


def _repeats(lines: list[str]) -> list[tuple[int, str, bool]]:
    """[(line number, what is wrong, False)] of each [section] or key given
    again (a strict reading refuses them; the last is used, as written)."""
    parser, section = configparser.ConfigParser(), None
    seen: dict[tuple[str, str | None], int] = {}
    found = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or line[:1].isspace() or text[:1] in "#;":
            continue
        head, option = parser.SECTCRE.match(text), parser.OPTCRE.match(text)
        key: tuple[str, str | None]
        if head:
            section = head.group("header")
            key, what = (section, None), "[%s] again: its keys join the first" % section
        elif option and section is not None:
            name = parser.optionxform(option.group("option").strip())
            key = (section, name)
            what = "%s again in [%s]: this last value is used" % (name, section)
        else:
            continue
        if key in seen:
            found.append((n, "%s (line %d before)" % (what, seen[key]), False))
        seen[key] = n
    return found
