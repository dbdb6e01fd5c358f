# -*- coding: utf-8 -*-
"""What an outcome does to a message: the record decision and the backoff,
as pure functions of the row, the outcome, the settings and the time.

- sent: ``sent`` (refused recipients kept in ``refused``);
- config: ``held`` under the settings' fingerprint, attempts and age untouched;
- transient: ``queued`` again after a jittered exponential backoff, or
  ``failed`` once ``max_attempts`` or ``max_age`` (time spent held not
  counted) is reached;
- permanent: ``failed`` at once with the reply.
"""

import collections
import datetime
import random

from .message import dumps
from .store import SENT_PLAIN, Logged, Status
from .transport import Kind

# ``logged`` is the attempt log's outcome and the pass's count to add to;
# ``changes`` the new values of the row (SENT_PLAIN: a plain success, which
# the store writes for many rows in one statement); ``attempt`` the log entry.
Decision = collections.namedtuple("Decision", "logged changes attempt")


def backoff(settings, attempts, rng=random):
    """Seconds to wait after the ``attempts``-th transient failure, jittered."""
    delay = min(settings.retry_max, settings.retry_base * 2 ** max(0, attempts - 1))
    return delay * rng.uniform(0.75, 1.25)


def give_up(row, settings, now, held_seconds=None):
    """True when a transient failure of ``row`` now is its last: past
    max_attempts, or past max_age not counting the time it spent held
    (``held_seconds()``, asked only when the age alone is past)."""
    if row.attempts + 1 >= settings.max_attempts:
        return True
    age = (now - row.created_on).total_seconds()
    return age >= settings.max_age and \
        (held_seconds is None or age - held_seconds() >= settings.max_age)


def decide(row, outcome, settings, now, fp, address=None, held_seconds=None,
           rng=random):
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


def _sent(row, outcome, now):
    return dict(status=Status.SENT, sent_on=now, attempts=row.attempts + 1,
                last_code=outcome.code, last_error=outcome.error,
                refused=dumps(outcome.refused) if outcome.refused else None)


def _decide(row, outcome, settings, now, fp, held_seconds, rng):
    tried = dict(code=outcome.code, error=outcome.error)
    attempts = row.attempts + 1
    if outcome.kind == Kind.SENT and not outcome.refused:
        return Decision(Logged.SENT, SENT_PLAIN, dict(tried, outcome=Logged.SENT))
    if outcome.kind == Kind.SENT:
        return Decision(Logged.SENT, _sent(row, outcome, now),
                        dict(tried, outcome=Logged.SENT))
    if outcome.kind == Kind.CONFIG:
        return Decision(Logged.HELD, dict(
            status=Status.HELD, held_fp=fp, last_error=outcome.error,
            last_code=outcome.code), dict(tried, outcome=Logged.HELD))
    if outcome.kind == Kind.TRANSIENT and not give_up(row, settings, now, held_seconds):
        later = now + datetime.timedelta(seconds=backoff(settings, attempts, rng))
        return Decision(Logged.RETRY, dict(
            status=Status.QUEUED, attempts=attempts, last_error=outcome.error,
            last_code=outcome.code, next_attempt_on=later),
            dict(tried, outcome=Logged.RETRY))
    error = outcome.error
    if outcome.kind == Kind.TRANSIENT:
        error = "gave up after %d attempts: %s" % (attempts, error)
    return Decision(Logged.FAILED, dict(
        status=Status.FAILED, attempts=attempts, last_error=error,
        last_code=outcome.code), dict(tried, outcome=Logged.FAILED, error=error))
