"""Site admins and the mail settings check (see controllers/outbox.py).

- ``[app] first_user_admin = true``: the first user on an empty database
  joins the ``admin`` group (later ones: scripts/outbox.py make-admin).
- The [smtp] settings check is logged at ERROR once per change, by whichever
  process (web server or scheduler worker) meets the change first.
"""

from s3outbox.accounts import admins as outbox_admins
from s3outbox.delivery.check import log_settings_check

# Anything but true, false (1/0, yes/no, on/off) or empty makes no one admin,
# named: before, "abc" (or "no") promoted the first user.
if config_value(
    "app.first_user_admin",
    boolean,
    False,
    then="false is used: no user is made admin by it (scripts/outbox.py make-admin does)",
):
    # The outbox's state table decides the winner of simultaneous first
    # registrations (see first_user_admin).
    outbox_admins.first_user_admin(auth, "admin", store=mail.store)
log_settings_check(mail)
