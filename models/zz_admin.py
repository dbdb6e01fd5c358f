# -*- coding: utf-8 -*-
"""Site admins and the mail settings check (see controllers/outbox.py).

- ``[app] first_user_admin = true``: the first user on an empty database
  joins the ``admin`` group (later ones: scripts/outbox.py make-admin).
- The [smtp] settings check is logged at ERROR once per change, by whichever
  process (web server or scheduler worker) meets the change first.
"""

from s3outbox import admin as outbox_admin

if configuration.get("app.first_user_admin"):
    outbox_admin.first_user_admin(auth, "admin")
outbox_admin.log_settings_check(mail)
