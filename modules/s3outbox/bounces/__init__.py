"""Bounces: delivery reports read back from the bounce mailbox.

Owns parsing reports (dsn), reading the mailbox over IMAP or POP3 (mailboxes),
matching each report to an outbox message, recording it once and marking
the message ``bounced`` (reader), and the bounce settings, their check and
the mailbox password that scrub() masks (settings), which it registers with
the delivery core through its hook when any of it is imported.
It may import ``delivery`` and ``transport``; delivery knows nothing of it.
"""

from . import settings  # noqa: F401 (registers the part's settings)
