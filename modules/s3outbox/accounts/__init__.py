"""Account flows: web2py's Auth with mail that queues, and their protection.

Owns ``OutboxAuth`` (auth.py, one mixin per flow: registration kept when
mail cannot go out, reset and username recovery without account
enumeration, approval, links, account mail marked), the Host check
(hostnames), the account-flow limits (flowlimit), the per-request checks
(requestcheck), account mail kept redacted and scrubbed (retention), the
same flows on Sahana Eden's AuthS3 (edenguard), who is a site admin
(admins: the first user, make-admin), and the account-flow settings, checks
(settings) and tables (tables), which it registers with the delivery core
through its hook when any of it is imported. It may import ``delivery`` and
``transport``; it knows nothing of the admin pages.
"""

from . import settings  # noqa: F401 (registers the part's settings and tables)
