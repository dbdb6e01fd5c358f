"""The hold type: its state rows' names, documents and times."""

import datetime
import json

import pytest

from s3outbox.delivery import holds
from s3outbox.delivery.holds import NEVER, Hold, in_force, read_rows, read_time, write_time

T = datetime.datetime(2026, 12, 4, 17, 0, 0)


def row(hold, text=None):
    """A held: row as the store returns it, its probe_after written as ``text``."""
    doc = hold.doc()
    if text is not None:
        doc["probe_after"] = text
    return (hold.name, json.loads(json.dumps(doc)), T)


@pytest.mark.parametrize(
    "when", [T, T.replace(microsecond=250000), T + datetime.timedelta(seconds=0.5), NEVER]
)
def test_a_hold_reads_back_as_written(when):
    hold = Hold("0123456789abcdef", "a1b2c3d4", "connection refused", when)
    held, _ = read_rows([row(hold)])
    (back,) = held.values()
    assert back == hold and back.key == "0123456789abcdef:a1b2c3d4"
    assert back.name == "held:0123456789abcdef:a1b2c3d4"
    assert back.doc() == hold.doc() and back.expected() == hold.doc()


@pytest.mark.parametrize(
    "text,when",
    [
        ("2026-12-04 17:00:00", T),  # str(datetime) to the second (rows before holds.py)
        ("2026-12-04 17:00:00.250000", T.replace(microsecond=250000)),  # probe_interval 0.25
        ("2026-12-04 17:00:00.25", T.replace(microsecond=250000)),
        ("2026-12-04T17:00:00", T),
        ("2026-12-04 17:00", T),
        ("2026-12-04T18:00:00+01:00", T),  # an offset is turned into naive UTC
        ("2026-12-04T17:00:00Z", T),
        ("9999-12-31 00:00:00", NEVER),
    ],
)
def test_old_time_texts_read(text, when):
    assert read_time(text) == when and read_time(text).tzinfo is None
    hold = Hold("fp", "host", "why", T)
    read = Hold.read(hold.name, dict(hold.doc(), probe_after=text))
    assert read.probe_after == when
    # A probe turn expects the row exactly as it was read, not as doc() writes it.
    assert read.expected()["probe_after"] == text


def test_times_are_written_as_str_writes_them():
    for when in (T, T.replace(microsecond=5), NEVER):
        assert write_time(when) == str(when)
    aware = datetime.datetime(
        2026, 12, 4, 18, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
    )
    assert write_time(aware) == "2026-12-04 17:00:00"


def test_holds_are_ordered_by_time_not_by_text():
    """As text, "2026-12-04T16:00:00" sorts after "2026-12-04 17:00:00"."""
    early = Hold("old", "h1", "early", read_time("2026-12-04T16:00:00"))
    late = Hold("older", "h2", "late", read_time("2026-12-04 17:00:00"))
    assert "2026-12-04T16:00:00" > "2026-12-04 17:00:00"
    assert in_force([late, early], "current", mail_held=True) is late
    assert in_force([early, late], "current", mail_held=True) is late


def test_the_hold_in_force():
    mine = Hold("current", "h1", "mine", T)
    other = Hold("old", "h2", "other", NEVER)
    assert in_force([other, mine], "current", mail_held=False) is mine
    assert in_force([other, mine], "current", mail_held=True) is mine
    assert in_force([other], "current", mail_held=True) is other
    assert in_force([other], "current", mail_held=False) is None
    assert in_force([], "current", mail_held=True) is None


def test_due_and_the_next_probe():
    hold = Hold("fp", "host", "why", T)
    assert not hold.due(T - datetime.timedelta(microseconds=1)) and hold.due(T)
    later = hold.probing_at(T + datetime.timedelta(seconds=300))
    assert (later.fp, later.host, later.reason) == ("fp", "host", "why")
    assert not later.due(T) and later != hold
    assert not Hold("fp", "host", "why", NEVER).due(datetime.datetime(9999, 12, 30))


def test_rows_read_into_holds_and_reaches():
    hold = Hold("fp1", "aaaa0000", "refused", T)
    rows = [
        row(hold),
        ("held:fp2:bbbb1111", None, T),  # a hold that ended
        (holds.reached_name(holds.key("fp1", "cccc2222")), None, T),
        ("settings_check", {"x": 1}, T),
    ]
    held, reached = read_rows(rows)
    assert held == {"fp1:aaaa0000": hold}
    assert reached == {"fp1:cccc2222": T}
    assert holds.host_of("fp1:cccc2222") == "cccc2222"
