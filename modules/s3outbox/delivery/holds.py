"""Hold and probe state: why some settings cannot deliver from a host, when
one worker may probe the server again, and when they last reached it.

Holds are per settings fingerprint and host, the key ``<fp>:<host>``. Two
state rows a key: ``held:<key>`` holds the document of a ``Hold`` (fp,
reason, probe_after), ``reached:<key>`` says by its ``updated_on`` when those
settings last reached the server from that host. This module owns those names,
the document and its times; the store reads and writes the rows, the engine
decides, the admin shows ``in_force()``.

Times in state rows are naive UTC datetimes, written as ISO text
(``write_time``) and read with ``datetime.fromisoformat`` (``read_time``), so
rows written at any precision, or with a ``T``, still read, and they are
compared as times, never as text.
"""

import dataclasses
import datetime
from collections.abc import Iterable
from typing import Any

HELD = "held:"
REACHED = "reached:"

# The probe time of a hold that no probe can end (only a change of settings).
NEVER = datetime.datetime(9999, 12, 31)


def read_time(value: str | datetime.datetime) -> datetime.datetime:
    """A stored time as a naive UTC datetime, whatever its precision or offset."""
    when = (
        value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(value)
    )
    if when.tzinfo is not None:
        when = when.astimezone(datetime.UTC).replace(tzinfo=None)
    return when


def write_time(when: datetime.datetime) -> str:
    """The text a state row keeps for ``when`` (naive UTC); ``str()``'s form,
    which rows written before this module have too."""
    return read_time(when).isoformat(" ")


def key(fp: str, host: str) -> str:
    """The key of the settings ``fp`` on ``host`` (a hash of the host name)."""
    return "%s:%s" % (fp, host)


def host_of(key: str) -> str:
    return key.rpartition(":")[2]


def held_name(key: str) -> str:
    return HELD + key


def reached_name(key: str) -> str:
    return REACHED + key


@dataclasses.dataclass(frozen=True)
class Hold:
    """Why the settings ``fp`` cannot deliver from ``host``, and after when
    one worker may probe the server (``NEVER``: only new settings help)."""

    fp: str
    host: str
    reason: str
    probe_after: datetime.datetime
    # The document as read: a probe turn is taken only while the row still
    # holds exactly that (a row written before may differ from doc() in form).
    stored: dict[str, Any] | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def read(cls, name: str, doc: dict[str, Any]) -> "Hold":
        """The hold in state row ``name`` with document ``doc``."""
        fp, host = name[len(HELD) :].rsplit(":", 1)
        return cls(fp, host, doc["reason"], read_time(doc["probe_after"]), stored=doc)

    @property
    def key(self) -> str:
        return key(self.fp, self.host)

    @property
    def name(self) -> str:
        return held_name(self.key)

    def doc(self) -> dict[str, Any]:
        """The document its state row keeps."""
        return dict(fp=self.fp, reason=self.reason, probe_after=write_time(self.probe_after))

    def expected(self) -> dict[str, Any]:
        """What its state row must still hold for a turn to replace it."""
        return self.stored if self.stored is not None else self.doc()

    def due(self, now: datetime.datetime) -> bool:
        """Whether a worker may probe the server now."""
        return now >= self.probe_after

    def probing_at(self, when: datetime.datetime) -> "Hold":
        """The same hold, probed next at ``when``."""
        return Hold(self.fp, self.host, self.reason, when)


def read_rows(
    rows: Iterable[tuple[str, dict[str, Any] | None, datetime.datetime]],
) -> tuple[dict[str, Hold], dict[str, datetime.datetime]]:
    """({key: Hold}, {key: when its settings last reached the server}) from
    the state rows (name, document, updated_on) named ``held:`` or ``reached:``; a
    ``held:`` row without a document is a hold that ended."""
    held, reached = {}, {}
    for name, doc, updated_on in rows:
        if name.startswith(REACHED):
            reached[name[len(REACHED) :]] = updated_on
        elif name.startswith(HELD) and doc:
            hold = Hold.read(name, doc)
            held[hold.key] = hold
    return held, reached


def in_force(holds: Iterable[Hold], fp: str, mail_held: bool) -> Hold | None:
    """The hold the admin is shown: the latest of the settings ``fp`` (those
    in force), else, while mail is held, the latest of any settings."""
    holds = list(holds)
    mine = [h for h in holds if h.fp == fp]
    return max(mine or (holds if mail_held else []), key=lambda h: h.probe_after, default=None)
