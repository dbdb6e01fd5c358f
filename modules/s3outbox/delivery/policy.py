"""What an outcome does to a message: the record decision and the backoff,
as pure functions of the row, the outcome, the settings and the time.

- sent: ``sent`` (recipients refused for good kept in ``refused``); when
  some recipients were refused for now (a 4xx), ``queued`` again after the
  backoff with those in ``deferred_rcpts``: the next delivery goes to them only,
  and when it ends for good they join ``refused`` (the message stays sent);
- config: ``held`` under the settings' fingerprint, attempts and age untouched;
- transient: ``queued`` again after a jittered exponential backoff, or
  ``failed`` once ``max_attempts`` or ``max_age`` (time spent held not
  counted) is reached;
- permanent: ``failed`` at once with the reply.
"""

import dataclasses
import datetime
import random
from collections.abc import Callable
from typing import NamedTuple, Protocol

from ..transport.base import Kind, Outcome
from .message import dumps, loads
from .store import SENT_PLAIN, Changes, Logged, Row, Status


class Decision(NamedTuple):
    """``logged`` is the attempt log's outcome and the pass's count to add to;
    ``changes`` the new values of the row (SENT_PLAIN: a plain success, which
    the store writes for many rows in one statement); ``attempt`` the log entry."""

    logged: Logged
    changes: Changes
    attempt: dict[str, object]


class Retries(Protocol):
    """The settings a decision reads (mail.settings, DEFAULTS' keys)."""

    retry_base: float
    retry_max: float
    max_attempts: int
    max_age: float


class Jitter(Protocol):
    """Where the backoff's jitter comes from: the random module, or a Random."""

    def uniform(self, a: float, b: float) -> float: ...


def backoff(settings: Retries, attempts: int, rng: Jitter = random) -> float:
    """Seconds to wait after the ``attempts``-th transient failure, jittered."""
    delay = min(settings.retry_max, settings.retry_base * 2 ** max(0, attempts - 1))
    return delay * rng.uniform(0.75, 1.25)


def give_up(
    row: Row,
    settings: Retries,
    now: datetime.datetime,
    held_seconds: Callable[[], float] | None = None,
) -> bool:
    """True when a transient failure of ``row`` now is its last: past
    max_attempts, or past max_age not counting the time it spent held
    (``held_seconds()``, asked only when the age alone is past)."""
    if row.attempts + 1 >= settings.max_attempts:
        return True
    age = (now - row.created_on).total_seconds()
    return age >= settings.max_age and (
        held_seconds is None or age - held_seconds() >= settings.max_age
    )


def decide(
    row: Row,
    outcome: Outcome,
    settings: Retries,
    now: datetime.datetime,
    fp: str,
    address: str | None = None,
    held_seconds: Callable[[], float] | None = None,
    rng: Jitter = random,
) -> Decision:
    """The Decision for ``outcome`` of claimed ``row`` at ``now``.

    ``fp``: the fingerprint of the settings used (kept on held mail);
    ``address``: where a pe_id's mail went, recorded on the row;
    ``held_seconds``: see give_up().
    """
    decision = _decide(row, outcome, settings, now, fp, held_seconds, rng)
    if address:
        changes = decision.changes
        if changes is SENT_PLAIN:
            changes = _sent(row, outcome, now)
        decision = decision._replace(changes=dict(changes, address=address))
    return decision


def _sent(row: Row, outcome: Outcome, now: datetime.datetime) -> dict[str, object]:
    """A message accepted for its recipients now, or refused for good for
    some of them (earlier refusals kept)."""
    refused = _merged(row.refused, outcome.refused)
    return dict(
        status=Status.SENT,
        sent_on=row.sent_on or now,
        attempts=row.attempts + 1,
        last_code=outcome.code,
        last_error=outcome.error,
        refused=dumps(refused) if refused else None,
        deferred_rcpts=None,
    )


def _merged(stored: str | None, more: dict[str, str] | None) -> dict[str, str | None]:
    """{address: reply} of the JSON ``stored`` with the dict ``more`` added
    (a site's own transport may give no reply)."""
    out: dict[str, str | None] = loads(stored) or {}
    out.update(more or {})
    return out


def _decide(
    row: Row,
    outcome: Outcome,
    settings: Retries,
    now: datetime.datetime,
    fp: str,
    held_seconds: Callable[[], float] | None,
    rng: Jitter,
) -> Decision:
    tried: dict[str, object] = dict(code=outcome.code, error=outcome.error)
    attempts = row.attempts + 1
    plain = not (outcome.refused or outcome.deferred or row.refused or row.deferred_rcpts)
    if outcome.kind == Kind.SENT and plain:
        return Decision(Logged.SENT, SENT_PLAIN, dict(tried, outcome=Logged.SENT))
    if outcome.kind == Kind.SENT and not outcome.deferred:
        return Decision(Logged.SENT, _sent(row, outcome, now), dict(tried, outcome=Logged.SENT))
    if outcome.kind == Kind.SENT:
        return _deferred(row, outcome, settings, now, held_seconds, rng)
    if outcome.kind == Kind.CONFIG:
        return Decision(
            Logged.HELD,
            dict(status=Status.HELD, held_fp=fp, last_error=outcome.error, last_code=outcome.code),
            dict(tried, outcome=Logged.HELD),
        )
    if outcome.kind == Kind.TRANSIENT and not give_up(row, settings, now, held_seconds):
        return Decision(
            Logged.RETRY,
            _later(row, outcome, settings, now, rng),
            dict(tried, outcome=Logged.RETRY),
        )
    error = outcome.error
    if outcome.kind == Kind.TRANSIENT:
        error = "gave up after %d attempts: %s" % (attempts, error)
    if row.sent_on is not None:  # the others have it: these recipients fail
        return _recipients_failed(row, outcome, now, error)
    changes: dict[str, object] = dict(
        status=Status.FAILED, attempts=attempts, last_error=error, last_code=outcome.code
    )
    if outcome.refused or outcome.deferred or row.refused:
        refused = _merged(row.refused, outcome.refused)
        refused.update(dict.fromkeys(outcome.deferred or (), error))
        changes.update(refused=dumps(refused), deferred_rcpts=None)
    return Decision(Logged.FAILED, changes, dict(tried, outcome=Logged.FAILED, error=error))


def _later(
    row: Row, outcome: Outcome, settings: Retries, now: datetime.datetime, rng: Jitter
) -> dict[str, object]:
    """The changes that queue ``row`` again after the backoff; recipients
    refused for good are kept, and with ``outcome.deferred`` only those go
    next time."""
    attempts = row.attempts + 1
    later = now + datetime.timedelta(seconds=backoff(settings, attempts, rng))
    changes: dict[str, object] = dict(
        status=Status.QUEUED,
        attempts=attempts,
        last_error=outcome.error,
        last_code=outcome.code,
        next_attempt_on=later,
    )
    if outcome.refused:
        changes["refused"] = dumps(_merged(row.refused, outcome.refused))
    if outcome.deferred:
        changes["deferred_rcpts"] = dumps(outcome.deferred)
    return changes


def _deferred(
    row: Row,
    outcome: Outcome,
    settings: Retries,
    now: datetime.datetime,
    held_seconds: Callable[[], float] | None,
    rng: Jitter,
) -> Decision:
    """Accepted for some recipients, refused with a 4xx for others: those
    are delivered again on their own (same message, only to them), with the
    backoff, max_attempts and max_age of a whole message."""
    tried: dict[str, object] = dict(code=outcome.code, error=outcome.error, outcome=Logged.SENT)
    if give_up(row, settings, now, held_seconds):
        error = "gave up after %d attempts" % (row.attempts + 1)
        gave_up = {r: "%s: %s" % (error, why) for r, why in (outcome.deferred or {}).items()}
        done = _sent(
            row, dataclasses.replace(outcome, refused=dict(outcome.refused or {}, **gave_up)), now
        )
        return Decision(Logged.SENT, done, tried)
    changes = _later(row, outcome, settings, now, rng)
    changes.update(
        sent_on=row.sent_on or now,
        refused=dumps(_merged(row.refused, outcome.refused))
        if outcome.refused or row.refused
        else None,
    )
    return Decision(Logged.SENT, changes, tried)


def _recipients_failed(
    row: Row, outcome: Outcome, now: datetime.datetime, error: str | None
) -> Decision:
    """A delivery to the recipients left of a message that others have
    (``row.deferred_rcpts``) ended for good: they are refused with ``error``; the
    message stays sent."""
    left = outcome.deferred or loads(row.deferred_rcpts) or {}
    refused = _merged(row.refused, outcome.refused)
    refused.update((r, error) for r in left if r not in refused)
    changes = dict(
        status=Status.SENT,
        attempts=row.attempts + 1,
        last_error=error,
        last_code=outcome.code,
        refused=dumps(refused),
        deferred_rcpts=None,
    )
    return Decision(
        Logged.FAILED, changes, dict(code=outcome.code, error=error, outcome=Logged.FAILED)
    )
