"""Bounces: delivery reports read back from the bounce mailbox.

Owns parsing reports (dsn), reading the mailbox over IMAP or POP3 (mailboxes)
and matching each report to an outbox message, recording it once and marking
the message ``bounced`` (reader). It may import ``delivery`` and
``transport``; delivery knows nothing of it.
"""
