"""s3outbox: a database outbox behind web2py's Mail API.

Imports only the standard library, gluon and pydal, so the folder can be
copied into any web2py or Sahana Eden application's modules/. The parts, from
the bottom up (each may import only the parts below it):

- ``transport``: talking to a mail server (SMTP, pipelining, classify);
- ``delivery``: the message, the store, the settings and the delivery pass;
- ``bounces``: delivery reports read back from the bounce mailbox;
- ``accounts``: web2py's Auth flows with queued mail, and their protection;
- ``admin``: what the dashboard and the command line show and do;
- ``mailer`` (``MailS3``) and ``eden`` (``EdenMail``), which join them.
"""

from .accounts.auth import OutboxAuth
from .delivery.settings import DEFAULTS, Snapshot
from .delivery.store import PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL, STATUSES
from .eden import EdenMail
from .mailer import MailS3

__all__ = [
    "MailS3",
    "EdenMail",
    "OutboxAuth",
    "PRIORITY_HIGH",
    "PRIORITY_NORMAL",
    "PRIORITY_LOW",
    "DEFAULTS",
    "Snapshot",
    "STATUSES",
]
