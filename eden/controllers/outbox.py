# -*- coding: utf-8 -*-
"""s3outbox: the mail outbox dashboard in Sahana Eden, for Eden's ADMIN role.

Installed by s3outbox's scripts/eden_install.py (``--uninstall`` removes it).
The pages, actions and views are those of the outbox app's dashboard
(views/outbox/); the queries and actions are s3outbox/admin.py. Only the
access check (Eden's roles) and the settings check (Eden's settings) differ.
"""

import hmac
import secrets

from s3outbox.admin import RETRYABLE, OutboxAdmin, chart_svg, format_age
from s3outbox.eden import CONFIG_FILE
from s3outbox.store import STATUSES

PAGE_SIZES = (50, 100, 200)
CHART_RANGES = {"day": (24, 3600, "Mail per hour, last 24 hours (UTC)"),
                "week": (168, 6 * 3600, "Mail per 6 hours, last 7 days (UTC)")}

# Every function here: Eden's ADMIN role only (Eden's own refusal: the login
# page for anonymous users, the home page with an error for the others).
if not auth.s3_has_role("ADMIN"):
    auth.permission.fail()
current.menu.options = OptionsMenu("admin").menu  # Eden's admin side menu
response.title = "Mail outbox"


def _formkey():
    if not session.outbox_formkey:
        session.outbox_formkey = secrets.token_urlsafe(24)
    return session.outbox_formkey


def _posted():
    """Refuse anything but a POST that carries this session's form key."""
    if request.env.request_method != "POST":
        raise HTTP(405, "This action needs a POST from the dashboard's forms.",
                   Allow="POST")
    sent = request.post_vars._formkey
    if not (isinstance(sent, str) and session.outbox_formkey and
            hmac.compare_digest(sent, session.outbox_formkey)):
        raise HTTP(403, "The form key is missing or out of date: reload the page "
                        "and try again.")


def _back(text):
    session.flash = text
    here = request.post_vars._next or ""
    prefix = URL("outbox", "index").rsplit("/", 1)[0] + "/"
    redirect(here if here.startswith(prefix) else URL("index"))


def _who():
    return "admin %s" % auth.user.email


def _ids():
    try:
        return [int(i) for i in request.post_vars.getlist("ids") if str(i).strip()]
    except ValueError:
        raise HTTP(400, "ids must be message numbers")


def _plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


# ------------------------------------------------------------------- pages
def index():
    view = request.get_vars.chart if request.get_vars.chart in CHART_RANGES else "day"
    hours, bucket, title = CHART_RANGES[view]
    admin = OutboxAdmin(mail)
    overview = admin.overview()
    if not mail.public_url:
        where = "settings.base.public_url"
        overview["findings"].append(dict(
            key=where, file=CONFIG_FILE, blocking=False,
            where="%s in %s" % (where, CONFIG_FILE),
            problem="no public URL is set: links in Eden's mail are built from "
                    "the Host header of the request"))
    chart = chart_svg(admin.activity(hours, bucket), title=title)
    return dict(o=overview, chart=XML(chart), chart_view=view, formkey=_formkey(),
                statuses=STATUSES, age=format_age)


def messages():
    v = request.get_vars
    status = v.status if v.status in STATUSES else None
    address = (v.address or "").strip()[:255] or None
    size = int(v.size) if v.size in [str(n) for n in PAGE_SIZES] else PAGE_SIZES[0]
    before = int(v.before) if (v.before or "").isdigit() else None
    after = int(v.after) if (v.after or "").isdigit() and before is None else None
    admin = OutboxAdmin(mail)
    page = admin.page(status=status, address=address, before=before, after=after,
                      size=size)
    filters = dict((k, val) for k, val in (("status", status), ("address", address),
                                           ("size", size if size != 50 else None))
                   if val)
    return dict(page=page, status=status, address=address or "", filters=filters,
                counts=admin.counts(), formkey=_formkey(), statuses=STATUSES,
                retryable=RETRYABLE, sizes=PAGE_SIZES, size=size)


def message():
    number = request.args(0)
    found = OutboxAdmin(mail).message(int(number)) if (number or "").isdigit() else None
    if found is None:
        raise HTTP(404, "No such message in the outbox.")
    return dict(m=found, formkey=_formkey())


# ----------------------------------------------------------------- actions
def retry():
    _posted()
    status = request.post_vars.status or None
    if status is not None and status not in RETRYABLE:
        _back("Only failed or held mail can be retried.")
    ids = [] if status else _ids()
    if not status and not ids:
        _back("Nothing selected: tick the messages to retry.")
    n = OutboxAdmin(mail).retry(ids=ids, status=status, who=_who())
    skipped = len(set(ids)) - n if ids else 0
    text = "%s queued for delivery now." % _plural(n, "message")
    if skipped:
        text += " %s skipped: only failed or held mail can be retried." % skipped
    _back(text)


def cancel():
    _posted()
    ids = _ids()
    if not ids:
        _back("Nothing selected: tick the messages to cancel.")
    n = OutboxAdmin(mail).cancel(ids=ids, who=_who())
    text = "%s cancelled." % _plural(n, "message")
    if len(set(ids)) > n:
        text += " %d skipped: mail that is being sent, was sent or was already " \
                "cancelled cannot be cancelled." % (len(set(ids)) - n)
    _back(text)


def purge():
    _posted()
    days = request.post_vars.days
    if not (days or "").strip().isdigit():
        _back("Purge: give the age in whole days (0 or more).")
    messages, attempts, files = OutboxAdmin(mail).purge(int(days), who=_who())
    _back("Purged %s sent more than %s ago, with %s and %s." % (
        _plural(messages, "message"), _plural(int(days), "day"),
        _plural(attempts, "attempt record"), _plural(files, "attachment")))


def test():
    _posted()
    to = (request.post_vars.to or "").strip()
    if not to:
        _back("Test mail: give an address to send to.")
    mail.refresh()  # the settings in 000_config.py now, as a delivery pass reads them
    ok, text = OutboxAdmin(mail).test_mail(to, site=settings.get_system_name_short())
    _back(("Test mail sent. " if ok else "Test mail failed. ") + text)
