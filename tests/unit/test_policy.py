"""decide(): every branch of the record decision, and the backoff, as pure
functions of (row, outcome, settings, now)."""

import datetime
import json

import pytest
from helpers import settings

from s3outbox.delivery.policy import backoff, decide, give_up
from s3outbox.delivery.store import SENT_PLAIN, Claimed, Logged, Status
from s3outbox.transport.base import Kind, Outcome

NOW = datetime.datetime(2026, 11, 29, 12, 0, 0)
SETTINGS = settings(max_attempts=3, max_age=3600, retry_base=60, retry_max=600)


class Middle:
    """A jitter source that always picks the middle of the range (factor 1)."""

    @staticmethod
    def uniform(low, high):
        return (low + high) / 2


def row(attempts=0, age=60):
    return Claimed(
        id=7,
        message_id="<m@x>",
        pe_id=None,
        address="a@x.net",
        status=Status.SENDING,
        attempts=attempts,
        expires_on=None,
        created_on=NOW - datetime.timedelta(seconds=age),
        sender=None,
        body="{}",
        attachment_count=0,
    )


def test_plain_success_is_the_shared_marker():
    d = decide(row(), Outcome(Kind.SENT, 250), SETTINGS, NOW, "fp")
    assert d.logged == Logged.SENT and d.changes is SENT_PLAIN
    assert d.attempt == dict(outcome="sent", code=250, error=None)


def test_success_with_refused_recipients_keeps_them():
    refused = {"b@x.net": "550 no such user"}
    d = decide(
        row(attempts=2), Outcome(Kind.SENT, 250, "refused some", refused), SETTINGS, NOW, "fp"
    )
    assert d.logged == Logged.SENT
    assert d.changes["status"] == "sent" and d.changes["attempts"] == 3
    assert d.changes["sent_on"] == NOW and json.loads(d.changes["refused"]) == refused
    assert d.changes["last_error"] == "refused some"


def test_config_error_holds_under_the_fingerprint_without_an_attempt():
    d = decide(row(attempts=2), Outcome(Kind.CONFIG, 535, "auth refused"), SETTINGS, NOW, "abc123")
    assert d.logged == Logged.HELD
    assert d.changes == dict(
        status="held", held_fp="abc123", last_error="auth refused", last_code=535
    )
    assert d.attempt["outcome"] == "held"


def test_transient_retries_after_the_backoff():
    d = decide(
        row(attempts=1), Outcome(Kind.TRANSIENT, 451, "later"), SETTINGS, NOW, "fp", rng=Middle
    )
    assert d.logged == Logged.RETRY and d.changes["status"] == "queued"
    assert d.changes["attempts"] == 2
    assert d.changes["next_attempt_on"] == NOW + datetime.timedelta(seconds=120)
    assert d.attempt == dict(outcome="retry", code=451, error="later")


@pytest.mark.parametrize("attempts, age", [(2, 60), (0, 3600)], ids=["max_attempts", "max_age"])
def test_transient_gives_up(attempts, age):
    d = decide(row(attempts, age), Outcome(Kind.TRANSIENT, 451, "later"), SETTINGS, NOW, "fp")
    assert d.logged == Logged.FAILED and d.changes["status"] == "failed"
    assert d.changes["last_error"] == "gave up after %d attempts: later" % (attempts + 1)
    assert d.attempt["error"] == d.changes["last_error"]


def test_permanent_fails_at_once_with_the_reply():
    d = decide(row(), Outcome(Kind.PERMANENT, 550, "550 no such user"), SETTINGS, NOW, "fp")
    assert d.logged == Logged.FAILED
    assert d.changes == dict(
        status="failed", attempts=1, last_error="550 no such user", last_code=550
    )


def test_backoff_doubles_up_to_retry_max_with_jitter():
    assert [backoff(SETTINGS, n, Middle) for n in (1, 2, 3, 4, 5)] == [60, 120, 240, 480, 600]
    assert all(45 <= backoff(SETTINGS, 1) <= 75 for _ in range(50))


def test_give_up_boundaries():
    assert not give_up(row(attempts=1, age=3599), SETTINGS, NOW)
    assert give_up(row(attempts=2), SETTINGS, NOW)
    assert give_up(row(age=3600), SETTINGS, NOW)


def test_stored_values_are_the_same_strings():
    assert [s.value for s in Status] == [
        "queued",
        "sending",
        "sent",
        "failed",
        "held",
        "cancelled",
        "bounced",
    ]
    assert {str(k) for k in Kind} == {"sent", "config", "transient", "permanent"}
    assert "%s" % Logged.RETRY == "retry" and Logged.RETRY == "retry"


def test_a_pe_ids_address_is_recorded_whatever_the_outcome():
    sent = decide(row(), Outcome(Kind.SENT, 250), SETTINGS, NOW, "fp", address="ann@people.net")
    assert sent.changes["address"] == "ann@people.net"
    assert sent.changes["status"] == "sent" and sent.changes["refused"] is None
    failed = decide(
        row(), Outcome(Kind.PERMANENT, 550, "no"), SETTINGS, NOW, "fp", address="ann@people.net"
    )
    assert failed.changes["address"] == "ann@people.net"
    assert failed.changes["status"] == "failed"


def test_time_spent_held_is_not_charged_to_max_age():
    old = row(attempts=0, age=4000)  # past max_age (3600) by the clock
    asked = []

    def held_for(seconds):
        def held_seconds():
            asked.append(seconds)
            return seconds

        return held_seconds

    retry = decide(
        old,
        Outcome(Kind.TRANSIENT, 451, "later"),
        SETTINGS,
        NOW,
        "fp",
        held_seconds=held_for(1000),
    )
    assert retry.logged == Logged.RETRY  # 4000 - 1000 held < 3600
    gone = decide(
        old, Outcome(Kind.TRANSIENT, 451, "later"), SETTINGS, NOW, "fp", held_seconds=held_for(100)
    )
    assert gone.logged == Logged.FAILED
    decide(
        row(age=60),
        Outcome(Kind.TRANSIENT, 451, "later"),
        SETTINGS,
        NOW,
        "fp",
        held_seconds=held_for(5),
    )
    assert asked == [1000, 100]  # not asked while the age alone is within max_age
