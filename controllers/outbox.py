"""The outbox dashboard, for members of the ``admin`` group only.

Pages (GET): index (counts, hold banner, settings check, chart), messages
(the list), message/<id> (one message and its attempts), bounces (the
failures that delivery reports stated, filtered by address and kind). Actions (POST with
the session's form key, then back with a flash saying what happened): retry,
cancel, purge, test, pause, resume. The logic lives in
modules/s3outbox/admin/ (outbox.py: queries and actions, params.py: the
parameter checks, chart.py), shared with scripts/outbox.py. A bad parameter
is answered with a 400 and a sentence. A helper without arguments starts
with two underscores: web2py makes any other such function a URL.
"""

import hmac
import secrets

from s3outbox.accounts.requestcheck import refuse
from s3outbox.admin.chart import chart_svg
from s3outbox.admin.outbox import RETRYABLE, OutboxAdmin, format_age
from s3outbox.admin.params import MAX_DAYS, BadParameter, local_next, one_text, whole_number
from s3outbox.bounces import reader as outbox_bounces
from s3outbox.delivery.store import STATUSES

PAGE_SIZES = (50, 100, 200)
CHART_RANGES = {
    "day": (24, 3600, "Delivery attempts per hour, last 24 hours (UTC)"),
    "week": (168, 6 * 3600, "Delivery attempts per 6 hours, last 7 days (UTC)"),
}


def __formkey():
    """The session's form key; every action form posts it back."""
    if not session.outbox_formkey:
        session.outbox_formkey = secrets.token_urlsafe(24)
    return session.outbox_formkey


def __posted():
    """Refuse anything but a POST that carries this session's form key."""
    if request.env.request_method != "POST":
        raise HTTP(405, "This action needs a POST from the dashboard's forms.", Allow="POST")
    sent = request.post_vars._formkey
    if not (
        isinstance(sent, str)
        and session.outbox_formkey
        and hmac.compare_digest(sent, session.outbox_formkey)
    ):
        raise HTTP(403, "The form key is missing or out of date: reload the page and try again.")


def _back(text):
    """Flash ``text`` and return to the page the form was on (a local one)."""
    session.flash = text
    prefix = URL("outbox", "index").rsplit("/", 1)[0] + "/"
    redirect(local_next(request.post_vars._next, prefix, URL("index")))


def __admin():
    return OutboxAdmin(mail)


def __who():
    return "admin %s" % auth.user.email


def _checked(check, vars, name, *args):
    """``check(vars[name], name, ...)``, or a 400 with its sentence."""
    try:
        return check(vars.get(name), name, *args)
    except BadParameter as e:
        refuse(400, "Bad parameter: %s." % e)


def _choice(vars, name, choices):
    """A parameter that must be one of ``choices`` (None when absent)."""
    value = _checked(one_text, vars, name)
    if value is not None and value not in choices:
        refuse(
            400,
            "Bad parameter: %s must be one of %s." % (name, ", ".join(str(c) for c in choices)),
        )
    return value


def _number(vars, name):
    """An optional message number; None when absent or empty."""
    if _checked(one_text, vars, name) is None:
        return None
    return _checked(whole_number, vars, name, 1)


def __ids():
    ids = [i for i in request.post_vars.getlist("ids") if str(i).strip()]
    try:
        return [whole_number(i, "ids", 1) for i in ids]
    except BadParameter:
        refuse(400, "Bad parameter: ids must be message numbers.")


def _plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


# ------------------------------------------------------------------- pages
@auth.requires_membership("admin")
def index():
    view = _choice(request.get_vars, "chart", sorted(CHART_RANGES)) or "day"
    hours, bucket, title = CHART_RANGES[view]
    admin = __admin()
    overview = admin.overview()
    overview["findings"] += response.outbox_findings or []  # [scheduler] (models/scheduler.py)
    chart = chart_svg(admin.activity(hours, bucket), title=title)
    return dict(
        o=overview,
        chart=XML(chart),
        chart_view=view,
        formkey=__formkey(),
        statuses=STATUSES,
        age=format_age,
        checked=("[smtp]", "private/appconfig.ini"),
    )


@auth.requires_membership("admin")
def messages():
    v = request.get_vars
    status = _choice(v, "status", STATUSES)
    address = _checked(one_text, v, "address")
    size = int(_choice(v, "size", [str(n) for n in PAGE_SIZES]) or PAGE_SIZES[0])
    before = _number(v, "before")
    after = _number(v, "after") if before is None else None
    admin = __admin()
    page = admin.page(status=status, address=address, before=before, after=after, size=size)
    filters = dict(
        (k, val)
        for k, val in (
            ("status", status),
            ("address", address),
            ("size", size if size != 50 else None),
        )
        if val
    )
    return dict(
        page=page,
        status=status,
        address=address or "",
        filters=filters,
        counts=admin.counts(),
        formkey=__formkey(),
        statuses=STATUSES,
        retryable=RETRYABLE,
        sizes=PAGE_SIZES,
        size=size,
    )


@auth.requires_membership("admin")
def message():
    if len(request.args) > 1:
        refuse(400, "Bad parameter: a message has one number (/message/N).")
    number = request.args(0)
    found = __admin().message(_checked(whole_number, {"id": number}, "id", 1)) if number else None
    if found is None:
        raise HTTP(404, "No such message in the outbox.")
    return dict(m=found, formkey=__formkey())


@auth.requires_membership("admin")
def bounces():
    v = request.get_vars
    address = _checked(one_text, v, "address")
    kind = _choice(v, "kind", outbox_bounces.KINDS)
    before = _number(v, "before")
    rows, older = outbox_bounces.page(mail, address=address, kind=kind, before=before)
    filters = dict((k, val) for k, val in (("address", address), ("kind", kind)) if val)
    return dict(
        rows=rows,
        older=older,
        address=address or "",
        kind=kind,
        filters=filters,
        kinds=outbox_bounces.KINDS,
        persons=None,
        bounced=outbox_bounces.count(mail),
    )


# ----------------------------------------------------------------- actions
@auth.requires_membership("admin")
def retry():
    __posted()
    status = _checked(one_text, request.post_vars, "status")
    if status is not None and status not in RETRYABLE:
        _back("Only failed or held mail can be retried.")
    ids = [] if status else __ids()
    if not status and not ids:
        _back("Nothing selected: tick the messages to retry.")
    n = __admin().retry(ids=ids, status=status, who=__who())
    skipped = len(set(ids)) - n if ids else 0
    text = "%s queued for delivery now." % _plural(n, "message")
    if skipped:
        text += " %s skipped: only failed or held mail can be retried." % skipped
    _back(text)


@auth.requires_membership("admin")
def pause():
    __posted()
    done = __admin().pause(who=__who())
    _back(
        "Delivery paused: mail is queued but not sent until you resume it."
        if done
        else "Delivery was paused already."
    )


@auth.requires_membership("admin")
def resume():
    __posted()
    done = __admin().resume(who=__who())
    _back(
        "Delivery resumed: waiting mail goes out within seconds."
        if done
        else "Delivery was not paused."
    )


@auth.requires_membership("admin")
def cancel():
    __posted()
    ids = __ids()
    if not ids:
        _back("Nothing selected: tick the messages to cancel.")
    n = __admin().cancel(ids=ids, who=__who())
    text = "%s cancelled." % _plural(n, "message")
    if len(set(ids)) > n:
        text += (
            " %d skipped: mail that is being sent, was sent or was already "
            "cancelled cannot be cancelled." % (len(set(ids)) - n)
        )
    _back(text)


@auth.requires_membership("admin")
def purge():
    __posted()
    days = _checked(one_text, request.post_vars, "days")
    if days is None:
        _back("Purge: give the age in whole days (0 or more).")
    days = _checked(whole_number, request.post_vars, "days", 0, MAX_DAYS)
    messages, attempts, files = __admin().purge(days, who=__who())
    _back(
        "Purged %s sent more than %s ago, with %s and %s."
        % (
            _plural(messages, "message"),
            _plural(days, "day"),
            _plural(attempts, "attempt record"),
            _plural(files, "attachment"),
        )
    )


@auth.requires_membership("admin")
def test():
    __posted()
    to = _checked(one_text, request.post_vars, "to")
    if not to:
        _back("Test mail: give an address to send to.")
    site = configuration.get("app.name") or request.application
    ok, text = __admin().test_mail(to, site=site)
    _back(("Test mail sent. " if ok else "Test mail failed. ") + text)
