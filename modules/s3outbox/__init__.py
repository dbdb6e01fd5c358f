# -*- coding: utf-8 -*-
"""s3outbox: a database outbox behind web2py's Mail API.

Imports only the standard library, gluon and pydal, so the folder can be
copied into any web2py or Sahana Eden application's modules/.
"""

from .mailer import PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL, MailS3
from .settings import DEFAULTS, Snapshot
from .store import STATUSES

__all__ = ["MailS3", "PRIORITY_HIGH", "PRIORITY_NORMAL", "PRIORITY_LOW",
           "DEFAULTS", "Snapshot", "STATUSES"]
