"""s3outbox: the mail outbox dashboard in Sahana Eden, for Eden's ADMIN role.

scripts/eden_install.py installs this file with the outbox app's own
controllers/outbox.py in place of the INCLUDE line below, so that Eden's
dashboard has exactly the app's pages, actions and parameter checks (the
logic is in s3outbox/admin/). Only what is here is Eden's: the access check,
Eden's admin menu, the site name, the headers that forbid framing (the
app's models add them to its pages; in Eden, s3outbox/accounts/edenguard.py adds them
to the account pages), a note in the settings check, and on the bounces page
the persons whose e-mail contact bounced, each linked to the contacts tab of
their record.
"""

from s3outbox.accounts.requestcheck import FRAME_HEADERS
from s3outbox.eden import CONFIG_FILE, bounced_persons

# Every function: Eden's ADMIN role only, refused as Eden refuses (the login
# page for anonymous users, the home page with an error for the others).
# The app's @auth.requires_membership("admin") is Eden's own check then.
if not auth.s3_has_role("ADMIN"):
    auth.permission.fail()
response.headers.update(FRAME_HEADERS)
current.menu.options = OptionsMenu("admin").menu  # Eden's admin side menu
response.title = "Mail outbox"
configuration = {"app.name": str(settings.get_system_name_short())}

# s3outbox:include controllers/outbox.py

_app_index = index
_app_bounces = bounces


def index():
    """The app's index, with what differs in Eden in its settings check."""
    out = _app_index()
    o = out["o"]
    out["checked"] = ("settings.mail.*", CONFIG_FILE)
    if not mail.settings.public_url and not mail.settings.host_names:
        key = "settings.base.public_url"
        o["findings"].append(
            dict(
                key=key,
                file=CONFIG_FILE,
                blocking=False,
                where="%s in %s" % (key, CONFIG_FILE),
                problem="no public URL is set: Eden answers only to localhost, "
                "127.0.0.1 and [::1] (settings.base.host_names adds names) "
                "and its mail links to the one a request used",
            )
        )
    return out


def bounces():
    """The app's bounces page, with the persons whose e-mail bounced."""
    out = _app_bounces()
    out["persons"] = [
        dict(p, url=URL(c="pr", f="person", args=[p["person_id"], "contacts"]))
        for p in bounced_persons(mail)
    ]
    return out
