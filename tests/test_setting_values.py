"""No setting value stops mail (issue 19).

A property over every setting delivery and send() read (settings._READERS),
with values of every kind: int, float, numeric text, other text, None, 0,
negative, huge, inf and nan. For each: send() queues the mail (a delivery
setting never makes it refuse one), a pass runs against a real SMTP sink on
SQLite, nothing escapes the pass or is logged with a traceback from inside
it, and the mail either goes out or is held with the key named. The settings
check names the key for every value it cannot use.

Then the cases of the issue's table, one by one, and [outbox] keys of
private/appconfig.ini as AppConfig gives them (text).

Each property runs EXAMPLES examples (OUTBOX_HYPOTHESIS_EXAMPLES overrides).
"""

import datetime
import logging
import os

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from s3outbox.delivery.settings import _READERS, DEFAULTS, apply_config, read_value
from s3outbox.delivery.store import utcnow

EXAMPLES = int(os.environ.get("OUTBOX_HYPOTHESIS_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

pytestmark = pytest.mark.parametrize("db_uri", ["sqlite"], indirect=True)

KEYS = sorted(_READERS)
VALUES = st.one_of(
    st.none(),
    st.just(0),
    st.just(""),
    st.just(" "),
    st.integers(-10, 10),
    st.integers(),
    st.integers(min_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-10, 100),
    st.booleans(),
    st.integers(-1000, 100000).map(str),
    st.floats(-10, 1000).map(repr),
    st.floats(0.001, 1e6).map(lambda f: " %s " % f),
    st.sampled_from(
        [
            "fast",
            "0/hour",
            "100/hour",
            "5/minute",
            "0",
            "-1",
            "1e400",
            "nan",
            "inf",
            "true",
            "false",
            "yes",
            "off",
            "10",
            "2.5",
            "1_000",
            "１０",
            "30s",
            "host#1",
            "x" * 200,
        ]
    ),
    st.text(max_size=12),
)


class Records(logging.Handler):
    """Every record of the s3outbox logger."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def records():
    handler = Records()
    logger = logging.getLogger("s3outbox")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.DEBUG
    yield handler.records
    logger.removeHandler(handler)
    logger.level = level


def _clean(mail, db):
    """Empty the outbox and its state: each example starts afresh."""
    store = mail.store
    for table in (store.attempt, store.attachment, store.state, store.outbox):
        db(table).delete()
    db.commit()


def _named(key, text, mail):
    names = mail.settings.config_names or {}
    return key in (text or "") or names.get("[outbox] " + key, "\0") in (text or "")


def _shown(value):
    """How the settings check shows ``value`` (its repr's start)."""
    try:
        return repr(value)[:20]
    except ValueError:  # Python 3.11 prints no int over 4,300 digits
        return "a number too long to print"


def _one(mail, db, sink, records, key, value):
    """Set ``key`` to ``value``, queue one mail, run a pass; check the rule."""
    _clean(mail, db)
    del records[:]
    before = sink.count
    mail.settings[key] = value
    try:
        used, problem = read_value(mail.settings, key)
        queued = mail.send("ann@people.net", "Property", "Body")
        if key == "max_size" and problem is None and not queued:
            # a valid limit smaller than the message: refused, and says why
            assert "max_size" in mail.error, mail.error
            return
        assert queued is True, (key, value, mail.error)
        db.commit()
        counts = mail.process_outbox()
        assert "error" not in counts, (key, value, counts)
        assert not [r for r in records if r.exc_info], (
            key,
            value,
            [r.getMessage() for r in records if r.exc_info],
        )
        row = db(mail.store.outbox).select().first()
        if row.status == "sent":
            assert sink.count == before + 1
        elif (
            key == "timeout"
            and problem is None
            and used < 5
            and "timed out" in (row.last_error or "")
        ):
            pass  # a short timeout on a busy machine: held, correctly
        else:
            assert row.status == "held", (key, value, row.status, row.last_error)
            assert (
                _named(key, row.last_error, mail)
                or key in ("tls", "ssl")
                and ("tls" in row.last_error or "TLS" in row.last_error)
            ), (key, value, row.last_error)
        if problem is not None:
            from s3outbox.delivery.check import findings

            section = "smtp" if key in ("tls", "ssl", "self_signed_certificate") else "outbox"
            found = [f for f in findings(mail.settings) if f["key"] == "[%s] %s" % (section, key)]
            assert found and _shown(value) in found[0]["problem"], (key, value)
    finally:
        mail.settings[key] = DEFAULTS.get(key, None) if key not in ("tls", "ssl") else False


@given(key=st.sampled_from(KEYS), value=VALUES)
@example(key="probe_interval", value=0.5)
@example(key="timeout", value="10")
@example(key="lease", value="600")
@example(key="batch_size", value="50")
@example(key="rate_limit", value="fast")
@example(key="max_size", value="1000000")
@example(key="default_priority", value=None)
@example(key="batch_size", value=0)
@example(key="rate_limit", value="0/hour")
@SETTINGS
def test_no_setting_value_stops_mail(mail, db, sink, records, key, value):
    _one(mail, db, sink, records, key, value)


@pytest.mark.parametrize(
    "value", [10**5000, "9" * 5000, "9" * 5000 + "/hour"], ids=["int", "digits", "rate"]
)
def test_a_number_too_long_to_print_is_named(mail, db, sink, records, value):
    """An int over 4,300 digits made the settings check raise (repr refuses it)."""
    for key in KEYS:
        _one(mail, db, sink, records, key, value)


def test_probe_interval_with_a_fraction_while_the_server_is_down(mail, db, sink):
    """A hold's probe_after written with microseconds is read back: the
    server is probed again and the mail goes out once it answers."""
    server = mail.settings.server
    mail.settings.probe_interval = 0.5
    mail.settings.server = "127.0.0.1:1"  # nothing listens there
    for i in range(3):
        assert mail.send("ann@people.net", "Down %d" % i, "Body")
    db.commit()
    for _ in range(2):
        counts = mail.process_outbox()
        assert "error" not in counts and counts["held"] >= 0, counts
    mail.settings.server = server
    store = mail.store
    # the probe turn comes after probe_interval: make it due
    held, _ = store.read_holds()
    now = utcnow()
    for hold in held.values():
        store.put_hold(hold.probing_at(now - datetime.timedelta(seconds=0.25)), now)
    counts = mail.process_outbox()
    assert "error" not in counts, counts
    assert sink.count == 3, counts


@pytest.mark.parametrize(
    "key,value",
    [
        ("timeout", "10"),
        ("lease", "600"),
        ("batch_size", "50"),
        ("max_size", "1000000"),
        ("max_attempts", "3"),
        ("retry_base", "0.5"),
        ("probe_interval", "2.5"),
        ("default_priority", "3"),
        ("sessions", "2"),
        ("pipelining", "false"),
    ],
)
def test_appconfig_outbox_keys_as_text(mail, db, sink, key, value):
    """[outbox] keys as AppConfig gives them (text) are used, not refused."""
    config = {
        "smtp.server": mail.settings.server,
        "smtp.sender": mail.settings.sender,
        "outbox." + key: value,
    }
    apply_config(mail, config.get)
    used, problem = read_value(mail.settings, key)
    assert problem is None and (used is False if key == "pipelining" else str(used) == value), (
        used,
        problem,
    )
    assert mail.send("ann@people.net", "Text", "Body"), mail.error
    db.commit()
    assert mail.process_outbox()["sent"] == 1


def test_bad_values_are_reported_in_the_settings_check_and_logged_once(mail, db, sink, records):
    from s3outbox.delivery.check import findings

    mail.settings.batch_size = 0
    mail.settings.default_priority = "high"
    for _ in range(3):
        assert mail.send("ann@people.net", "Bad", "Body"), mail.error
        db.commit()
        counts = mail.process_outbox()
        assert counts["sent"] == 1 and "error" not in counts, counts
    found = {f["key"]: f["problem"] for f in findings(mail.settings)}
    assert "batch_size = 0 cannot be used" in found["[outbox] batch_size"]
    assert "the default 100 is used" in found["[outbox] batch_size"]
    assert "default_priority = 'high'" in found["[outbox] default_priority"]
    logged = [r.getMessage() for r in records if "batch_size = 0" in r.getMessage()]
    assert len(logged) == 1, logged


def test_a_rate_limit_that_cannot_be_used_holds_until_fixed(mail, db, sink):
    mail.settings.rate_limit = "fast"
    assert mail.send("ann@people.net", "Limited", "Body")
    db.commit()
    counts = mail.process_outbox()
    assert counts["held"] == 1, counts
    row = db(mail.store.outbox).select().first()
    assert "rate_limit = 'fast'" in row.last_error and "[outbox] rate_limit" in row.last_error
    mail.settings.rate_limit = "100/hour"
    counts = mail.process_outbox()
    assert counts["sent"] == 1, counts


@pytest.mark.parametrize(
    "sender", [42, 4.5, ["ann@people.net"], b"ann@people.net", "x@%s.org" % ("a" * 64)]
)
def test_a_sender_of_any_type_never_stops_send(mail, db, sink, sender):
    """settings.mail.sender = 42 in Eden's 000_config.py (or a domain DNS
    cannot carry) made send() refuse every mail (a TypeError building the
    Message-ID): the mail is queued, held while the sender is unusable, and
    goes out once it is fixed."""
    good = mail.settings.sender
    mail.settings.sender = sender
    assert mail.send("ann@people.net", "Any sender", "Body"), mail.error
    db.commit()
    counts = mail.process_outbox()
    assert "error" not in counts and counts["sent"] == 0, counts
    mail.settings.sender = good
    counts = mail.process_outbox()
    assert counts["sent"] == 1 and sink.count == 1, counts


@pytest.mark.parametrize(
    "value", ["not an address", "u@x>, <http://evil.example/", "u@x\r\nBcc: e@evil.example", 42]
)
def test_a_bad_list_unsubscribe_setting_queues_without_the_header(mail, db, sink, value):
    """mail.settings.list_unsubscribe is a setting like any other: a value
    that cannot be used is named in the settings check and the mail goes out
    without the header, never refused by send()."""
    from s3outbox.delivery.check import findings

    mail.settings.list_unsubscribe = value
    assert mail.send("ann@people.net", "Unsubscribe", "Body") is True, mail.error
    db.commit()
    assert mail.process_outbox()["sent"] == 1
    assert b"List-Unsubscribe" not in sink.messages[-1][2]
    found = {f["key"]: f["problem"] for f in findings(mail.settings)}
    assert repr(value)[:20] in found["[outbox] list_unsubscribe"], found
    mail.settings.list_unsubscribe = "leave@outbox.localhost"
    assert mail.send("ann@people.net", "Unsubscribe", "Body") is True
    db.commit()
    assert mail.process_outbox()["sent"] == 1
    assert b"List-Unsubscribe: <mailto:leave@outbox.localhost>" in sink.messages[-1][2]


@pytest.mark.parametrize("key", ["tls", "ssl", "self_signed_certificate"])
def test_nonsense_smtp_flags_in_appconfig_are_named(mail, key):
    """[smtp] tls = maybe was read as false without a word: the settings
    check names it, the dashboard and the bounce reader use what delivery uses."""
    from s3outbox.admin.summary import settings_summary
    from s3outbox.bounces.reader import _context
    from s3outbox.delivery.check import findings

    config = {
        "smtp.server": mail.settings.server,
        "smtp.sender": mail.settings.sender,
        "smtp." + key: "maybe",
    }
    apply_config(mail, config.get)
    assert read_value(mail.settings, key)[0] is False
    found = {f["key"]: f["problem"] for f in findings(mail.settings)}
    assert "%s = 'maybe' cannot be used" % key in found["[smtp] " + key], found
    assert _context(mail.settings) is None
    if key != "self_signed_certificate":
        assert settings_summary(mail.settings)[key] is False
    config["smtp." + key] = "yes"
    apply_config(mail, config.get)
    assert read_value(mail.settings, key) == (True, None)


@pytest.mark.parametrize("key", ["tls", "ssl"])
def test_nonsense_tls_or_ssl_holds_mail_until_fixed(mail, db, sink, key):
    """Whether to encrypt is not guessed from a typo: with tls = maybe the
    mail is held with the key named (not sent in clear), and goes out once
    the value is fixed."""
    config = {
        "smtp.server": mail.settings.server,
        "smtp.sender": mail.settings.sender,
        "smtp." + key: "maybe",
    }
    apply_config(mail, config.get)
    assert mail.send("ann@people.net", "TLS", "Body") is True, mail.error
    db.commit()
    counts = mail.process_outbox()
    assert counts["sent"] == 0 and counts["held"] == 1 and sink.count == 0, counts
    row = db(mail.store.outbox).select().first()
    assert row.status == "held" and "%s = 'maybe'" % key in row.last_error, row.last_error
    config["smtp." + key] = "false"
    apply_config(mail, config.get)
    assert mail.process_outbox()["sent"] == 1 and sink.count == 1


def test_a_flow_window_of_zero_is_named(mail):
    """flow_window = 0 made every limit a one-second window (no limit) silently."""
    from s3outbox.delivery.check import findings

    apply_config(
        mail,
        {
            "smtp.server": mail.settings.server,
            "smtp.sender": mail.settings.sender,
            "outbox.flow_window": "0",
        }.get,
    )
    assert mail.settings.flow_window == 3600
    found = {f["key"]: f["problem"] for f in findings(mail.settings)}
    assert "flow_window = '0' cannot be used" in found["[outbox] flow_window"], found


def test_a_retention_beyond_the_calendar_is_named_and_tidy_still_runs(mail, db):
    """sent_retention_days = 1,000,000 put the purge cutoff before year 1: the
    tidy job failed on every run, and the settings check said nothing."""
    from s3outbox.accounts import retention
    from s3outbox.delivery.check import findings

    apply_config(
        mail,
        {
            "smtp.server": mail.settings.server,
            "smtp.sender": mail.settings.sender,
            "outbox.sent_retention_days": "1000000",
        }.get,
    )
    assert mail.settings.sent_retention_days == 30
    found = {f["key"]: f["problem"] for f in findings(mail.settings)}
    assert (
        "sent_retention_days = '1000000' cannot be used" in found["[outbox] sent_retention_days"]
    ), found
    assert retention._tidy(mail)["purged"] == 0  # _tidy: an overflow would raise here


def test_a_bad_bounce_interval_is_named_with_its_value(mail):
    from s3outbox.delivery.check import findings

    apply_config(
        mail,
        {
            "smtp.server": mail.settings.server,
            "smtp.sender": mail.settings.sender,
            "outbox.bounce_interval": "nonsense",
        }.get,
    )
    found = {f["key"]: f["problem"] for f in findings(mail.settings)}
    assert "bounce_interval = 'nonsense' cannot be used" in found["[outbox] bounce_interval"], (
        found
    )
