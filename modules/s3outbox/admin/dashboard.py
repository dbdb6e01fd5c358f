"""What the site admin sees and does: the queries and actions behind the
outbox dashboard (controllers/outbox.py) and the command line
(scripts/outbox.py), so both behave the same.

Queries stay fast on a large outbox: counts are one GROUP BY, the oldest
waiting message is a MIN per status on the (status, created_on) index, the
list pages by id (keyset: ``before``/``after`` an id, never OFFSET), and the
activity chart is one GROUP BY over the attempt log's time index.
Nothing here ever shows the SMTP password: the login is shown as its user
name only, and text that reaches the admin passes through ``scrub()``.
Account mail is shown with its keys and codes redacted (retention.py).
Parameters from the dashboard and the command line are checked here
(``whole_number``, ``one_text``): a bad one raises ``BadParameter`` with a
sentence, which the dashboard answers with a 400 and the command line with
a one-line error.
"""

import datetime
import hashlib
import json
import logging
import posixpath
import re
import urllib.parse
from xml.sax.saxutils import escape

from ..accounts import retention, tables
from ..accounts import settings as account_settings
from ..accounts.requestcheck import bad_character
from ..bounces import reader as bounces
from ..bounces import settings as bounce_settings
from ..delivery.message import bare
from ..delivery.settings import Snapshot, part_findings, read_value
from ..delivery.store import PAUSE, STATUSES, Logged, Status, utcnow

logger = logging.getLogger("s3outbox")

WAITING = (Status.QUEUED, Status.SENDING, Status.HELD)
RETRYABLE = (Status.FAILED, Status.HELD)
CANCELLABLE = (Status.QUEUED, Status.HELD, Status.FAILED)
CONFIG_FILE = "private/appconfig.ini"
MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL and MariaDB
MAX_DAYS = 36500  # a century; beyond it the cutoff date overflows
MAX_LIST = 1000  # messages one command-line listing shows at most


# ------------------------------------------------------------- parameters
class BadParameter(ValueError):
    """A dashboard or command-line parameter that is refused, with why."""


def whole_number(value, name, low=0, high=MAX_ID):
    """``value`` (text from a form or a command line) as an int from ``low``
    to ``high``: ASCII digits only (``str.isdigit`` also takes '²'), no sign
    or space (in a URL ``?before=+5`` is ' 5')."""
    if isinstance(value, (list, tuple)):
        raise BadParameter("%s was given more than once" % name)
    text = _text(value, name)
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise BadParameter("%s must be a whole number from %d to %d" % (name, low, high))
    return int(text)


def one_text(value, name, max_length=255):
    """``value`` as one line of text; None when empty."""
    if isinstance(value, (list, tuple)):
        raise BadParameter("%s was given more than once" % name)
    text = _text("" if value is None else value, name).strip()
    problem = bad_character(text)
    if problem or "\n" in text or "\r" in text:
        raise BadParameter("%s contains %s" % (name, problem or "a line break"))
    if len(text) > max_length:
        raise BadParameter("%s is longer than %d characters" % (name, max_length))
    return text or None


def _text(value, name):
    """A parameter as text; a file part (a form field sent as an upload) is
    refused: its truth value and str() are not its content."""
    if not isinstance(value, (str, int)):
        raise BadParameter("%s must be text, not a file" % name)
    return str(value)


def local_next(value, prefix, default):
    """``value`` (a ``_next`` from a form) if it is a path on this site
    under ``prefix``, judged after normalising it as a browser would (``..``
    and ``.`` segments, also percent-encoded; a backslash is a slash);
    otherwise ``default``. Returned normalised, with its query."""
    if not isinstance(value, str) or not value.startswith("/") or "\\" in value:
        return default
    parts = urllib.parse.urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    path = posixpath.normpath(urllib.parse.unquote(parts.path))
    if not (path + "/").startswith(prefix) or path.startswith("//"):
        return default
    path = urllib.parse.quote(path + ("/" if parts.path.endswith("/") else ""))
    return path + ("?" + parts.query if parts.query else "")


# What to edit for the configuration errors the transport reports; the
# first pattern found in the reason wins.
_HINTS = (
    ("authentication", "[smtp] login"),
    ("sender", "[smtp] sender"),
    ("tls", "[smtp] tls and [smtp] ssl"),
    ("ssl", "[smtp] tls and [smtp] ssl"),
    ("resolve", "[smtp] server"),
    ("refused", "[smtp] server"),
    ("reach", "[smtp] server"),
    ("server", "[smtp] server"),
)


_NAMED_KEY = re.compile(r"\(edit (.+?)(?: in [^ ()]+)?\)$")


def config_file(settings):
    """The file the admin edits: private/appconfig.ini, or as the host app
    names it in ``settings.config_names`` (Sahana Eden: models/000_config.py)."""
    return (settings.config_names or {}).get("file", CONFIG_FILE)


def edit_hint(reason, names=None):
    """Which setting to edit for a hold ``reason`` (renamed by ``names``)."""
    named = _NAMED_KEY.search(reason or "")
    if named:  # blocking_problem() ends with "(edit [smtp] sender)"
        return named.group(1)
    text = (reason or "").lower()
    key = "[smtp] server, sender and login"
    for pattern, hint in _HINTS:
        if pattern in text:
            key = hint
            break
    return (names or {}).get(key, key)


def format_age(delta):
    """'45 s', '12 min', '3 h 5 min', '2 d 4 h' for a timedelta."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return "%d s" % seconds
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 60:
        return "%d min" % minutes
    if hours < 24:
        return "%d h %d min" % (hours, minutes % 60)
    return "%d d %d h" % (days, hours % 24)


def password_of(settings):
    login = settings.login
    return login.partition(":")[2] if isinstance(login, str) else ""


def scrub(text, settings):
    """``text`` with the SMTP password (if it occurs at all) masked."""
    if text is None:
        return None
    text = str(text)
    secret = password_of(settings)
    text = text.replace(secret, "********") if secret else text
    return bounces.admin_text(text, settings)


def settings_summary(settings):
    """The SMTP settings as the dashboard shows them: no password; ``keys``
    and ``file`` say where the admin edits them."""
    login = settings.login if isinstance(settings.login, str) else ""
    user = login.partition(":")[0]
    names = settings.config_names or {}
    keys = dict(
        (k, names.get("[smtp] %s" % k, "[smtp] %s" % k))
        for k in ("server", "sender", "login", "tls", "ssl")
    )
    keys["limits"] = names.get("[outbox] flow_*", "[outbox] flow_* (account mail)")
    keys["bounces"] = names.get("[outbox] bounce_*", "[outbox] bounce_*")
    return dict(
        server=settings.server or "",
        sender=settings.sender or "",
        login=("%s (password set)" % user) if user else "(none)",
        tls=read_value(settings, "tls")[0],
        ssl=read_value(settings, "ssl")[0],
        keys=keys,
        file=config_file(settings),
        limits=account_settings.summary(settings),
        bounces=bounce_settings.summary(settings),
    )


def findings(settings):
    """Snapshot(settings).findings() and the registered parts' (accounts,
    bounces) as dicts, scrubbed, with the setting and the file to edit as the host app names them
    (``settings.config_names``)."""
    names, where = settings.config_names or {}, config_file(settings)
    found = [
        (names.get(key, key), problem, blocking)
        for key, problem, blocking in Snapshot(settings).findings() + part_findings(settings)
    ]
    return [
        dict(
            key=key,
            problem=scrub(problem, settings),
            blocking=blocking,
            file=where,
            where="%s in %s" % (key, where),
        )
        for key, problem, blocking in found
    ]


# --------------------------------------------------------- settings logging
_checked = {}  # (database, table) -> digest of the findings last checked here


def log_settings_check(mail):
    """Log the settings findings at ERROR once per change, across processes.

    Cheap on every request: a process reads the outbox's ``settings_check``
    state row only when its own findings changed; the row decides which
    process logs, so a change is logged once, not once per process or message.
    The caller's transaction commits the state row.
    """
    found = findings(mail.settings)
    digest = hashlib.sha256(
        json.dumps([[f["key"], f["problem"]] for f in found]).encode("utf-8")
    ).hexdigest()[:16]
    store = mail.store
    where = (mail.db._uri_hash, store.tablename)
    if _checked.get(where) == digest:
        return False
    old = store.get_state("settings_check")
    new = dict(digest=digest)
    if old == new:
        _checked[where] = digest
        return False
    if old is None:  # insert-or-nothing: processes meeting a change at once
        store._ensure_state("settings_check", utcnow())
    if not store.set_state("settings_check", new, expect=old):
        return False  # another process took this change and logs it
    _checked[where] = digest
    for f in found:
        logger.error("mail settings: %s (edit %s)", f["problem"], f["where"])
    if not found and old is not None:
        logger.info("mail settings: the check finds no problem any more")
    return True


# --------------------------------------------------------------- the outbox
class Page:
    """One page of the message list: ``rows`` newest first, and the ids to
    pass as ``after`` (newer page) or ``before`` (older page), or None."""

    def __init__(self, rows, newer, older):
        self.rows, self.newer, self.older = rows, newer, older


class OutboxAdmin:
    """The admin's view of one MailS3's outbox."""

    LIST_FIELDS = (
        "id",
        "created_on",
        "status",
        "address",
        "pe_id",
        "subject",
        "priority",
        "attempts",
        "next_attempt_on",
        "sent_on",
        "last_code",
        "last_error",
    )

    def __init__(self, mail):
        self.mail = mail
        self.settings = mail.settings
        self.store = mail.store
        self.db = mail.db
        self.outbox = self.store.outbox

    # ------------------------------------------------------------ overview
    def counts(self):
        """{status: number of messages} for every status, zeros included."""
        found = self.store.count_by_status()
        return dict((s, int(found.get(s, 0))) for s in STATUSES)

    def oldest_waiting(self):
        """created_on of the oldest message not yet sent, failed or cancelled."""
        o = self.outbox
        first = o.created_on.min()
        times = [self.db(o.status == s).select(first).first()[first] for s in WAITING]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def recent(self, now=None):
        """Attempts that sent and attempts that failed a message, in the last
        hour and day, from the attempt log (a message is one attempt that
        sent or failed it: a retried one counts each time)."""
        now = now or utcnow()
        a = self.store.attempt
        n = a.id.count()
        out = {}
        for name, seconds in (("hour", 3600), ("day", 86400)):
            since = now - datetime.timedelta(seconds=seconds)
            found = {
                r[a.outcome]: r[n]
                for r in self.db(
                    (a.attempted_on > since) & a.outcome.belongs((Logged.SENT, Logged.FAILED))
                ).select(a.outcome, n, groupby=a.outcome)
            }
            out[name] = dict(sent=found.get(Logged.SENT, 0), failed=found.get(Logged.FAILED, 0))
        return out

    def held(self):
        """The hold in force, for the banner, or None: the hold of the
        current settings, else (while mail is held) the latest other one."""
        holds, _ = self.store.hosts()
        current = Snapshot(self.settings).fingerprint()
        count = self.store.count_held()
        mine = [h for h in holds.values() if h.get("fp") == current]
        others = sorted(holds.values(), key=lambda h: h["probe_after"]) if count else []
        state = (mine or others or [None])[-1]
        if not state:
            return None
        reason = scrub(state.get("reason"), self.settings)
        return dict(
            reason=reason,
            edit=edit_hint(reason),
            file=CONFIG_FILE,
            count=count,
            settings_changed=state.get("fp") != current,
        )

    def overview(self, now=None):
        now = now or utcnow()
        counts = self.counts()
        oldest = self.oldest_waiting()
        return dict(
            counts=counts,
            total=sum(counts.values()),
            waiting=sum(counts[s] for s in WAITING),
            oldest=oldest,
            oldest_age=(now - oldest) if oldest else None,
            recent=self.recent(now),
            held=self.named(self.held()),
            paused=self.store.get_state(PAUSE),
            findings=findings(self.settings),
            settings=settings_summary(self.settings),
        )

    def named(self, held):
        """``held`` with the setting and file to edit as the host app names
        them (``settings.config_names``; Sahana Eden: models/000_config.py)."""
        if held:
            held.update(
                edit=edit_hint(held["reason"], self.settings.config_names),
                file=config_file(self.settings),
            )
        return held

    # ---------------------------------------------------------------- list
    def page(self, status=None, address=None, before=None, after=None, size=50):
        """A page of messages, newest first, filtered by status and address.

        ``address`` matches any part of the recipient, case-insensitively.
        Keyset paging (``before``/``after`` an id) costs the same on page 1
        and page 2,000.
        """
        o = self.outbox
        query = o.id > 0
        if status:
            query &= o.status == status
        if address:
            query &= self.store.address_contains(address.strip())
        fields = [o[f] for f in self.LIST_FIELDS]
        if after is not None:
            rows = list(
                self.db(query & (o.id > after)).select(
                    *fields, orderby=o.id, limitby=(0, size + 1)
                )
            )
            more_newer = len(rows) > size
            rows = rows[:size][::-1]
            more_older = bool(rows) and self._exists(query & (o.id < rows[-1].id))
        else:
            if before is not None:
                query_page = query & (o.id < before)
            else:
                query_page = query
            rows = list(self.db(query_page).select(*fields, orderby=~o.id, limitby=(0, size + 1)))
            more_older = len(rows) > size
            rows = rows[:size]
            more_newer = (
                before is not None and bool(rows) and self._exists(query & (o.id > rows[0].id))
            )
        tries = self.tries([row.id for row in rows])
        for row in rows:
            row.last_error = scrub(row.last_error, self.settings)
            row.tries = tries.get(row.id, 0)
        return Page(
            rows,
            rows[0].id if rows and more_newer else None,
            rows[-1].id if rows and more_older else None,
        )

    def _exists(self, query):
        return bool(self.db(query).select(self.outbox.id, limitby=(0, 1)))

    def tries(self, ids):
        """{message id: its delivery attempts in the attempt log}: what the
        admin sees as Tries, kept across manual retries (which start the
        ``attempts`` towards ``max_attempts`` again)."""
        if not ids:
            return {}
        a = self.store.attempt
        n = a.id.count()
        return {
            r[a.outbox_id]: r[n]
            for r in self.db(a.outbox_id.belongs(ids)).select(a.outbox_id, n, groupby=a.outbox_id)
        }

    def message(self, message_id):
        """(row, content, attempts, attachments) for one message, or None."""
        o, a, t = self.outbox, self.store.attempt, self.store.attachment
        row = self.db(o.id == message_id).select().first()
        if row is None:
            return None
        row.last_error = scrub(row.last_error, self.settings)
        content = self.store.content(row) or {}
        flow = tables.flows(self.store, [row.id]).get(row.id)
        for key in ("text", "html"):
            if isinstance(content.get(key), str):
                content[key] = retention.redact(content[key], flow)
        attempts = self.db(a.outbox_id == row.id).select(orderby=a.attempted_on | a.id)
        for attempt in attempts:
            attempt.error = scrub(attempt.error, self.settings)
        row.tries = len(attempts)
        files = self.db(t.outbox_id == row.id).select(
            t.seq, t.kind, t.filename, t.content_type, orderby=t.seq
        )
        refused = json.loads(row.refused) if row.refused else {}
        sender = (self.settings.config_names or {}).get("[smtp] sender", "[smtp] sender")
        return dict(
            row=row,
            content=content,
            attempts=attempts,
            attachments=files,
            refused=refused,
            sender_setting=sender,
            recipients=self.recipients(row, content),
        )

    def recipients(self, row, content):
        """[(address, outcome, reply)] for each envelope recipient: refused
        (for good), deferred (tried again at next_attempt_on, only they),
        accepted, or waiting (not accepted by the server yet)."""
        refused = json.loads(row.refused) if row.refused else {}
        deferred = json.loads(row.deferred_rcpts) if row.deferred_rcpts else {}
        listed = [a for key in ("to", "cc", "bcc") for a in content.get(key) or ()]
        addresses = [bare(a) for a in listed if isinstance(a, str)] or (
            [row.address] if row.address else []
        )
        addresses += [a for a in list(refused) + list(deferred) if a not in addresses]
        out = []
        for address in addresses:
            if address in refused:
                out.append((address, "refused", scrub(refused[address], self.settings)))
            elif address in deferred:
                out.append((address, "deferred", scrub(deferred[address], self.settings)))
            elif row.sent_on is not None:
                out.append((address, "accepted", None))
            else:
                out.append((address, "waiting", None))
        return out

    # ------------------------------------------------------------- actions
    def retry(self, ids=None, status=None, now=None, who=None):
        """Queue failed or held messages for delivery now; return how many.

        ``ids``: those messages (others are skipped); ``status``: every
        message with that status (failed or held). Attempts start again from
        zero and an expiry is lifted, since the admin asked for delivery. A
        hold's probe wait is cut short so the next pass really tries.
        """
        query = self._select(ids, status, RETRYABLE)
        if query is None:
            return 0
        n = self.store.retry(query, now or utcnow())
        logger.info("%s: %d message(s) queued for retry", who or "admin", n)
        return n

    def pause(self, who):
        """Pause delivery for every worker (see MailS3.pause); False if it
        was paused already."""
        return self.mail.pause(who or "admin")

    def resume(self, who):
        """Let delivery go on; False if it was not paused."""
        return self.mail.resume(who or "admin")

    def cancel(self, ids=None, status=None, who=None):
        """Cancel queued, held or failed messages (never one being sent)."""
        query = self._select(ids, status, CANCELLABLE)
        if query is None:
            return 0
        n = self.store.cancel(query)
        logger.info("%s: %d message(s) cancelled", who or "admin", n)
        return n

    def _select(self, ids, status, allowed):
        o = self.outbox
        if status is not None:
            if status not in allowed:
                raise ValueError("status must be one of %s" % ", ".join(allowed))
            return o.status == status
        ids = sorted({whole_number(i, "a message number", 1) for i in ids or ()})
        if not ids:
            return None
        return o.id.belongs(ids) & o.status.belongs(allowed)

    def purge(self, days, now=None, chunk=500, who=None):
        """Delete sent messages older than ``days`` days (by sent_on), with their
        attempts and attachments; commits every ``chunk`` messages.

        Returns (messages, attempts, attachments) deleted.
        """
        days = whole_number(days, "days", 0, MAX_DAYS)
        cutoff = (now or utcnow()) - datetime.timedelta(days=days)
        totals = self.store.purge_sent(cutoff, chunk)
        logger.info(
            "%s: purged %d sent message(s) older than %d day(s)", who or "admin", totals[0], days
        )
        return totals

    def test_mail(self, to, site="the outbox"):
        """Send a test message now with the current settings.

        Returns (ok, text): what the server answered, in words, with the
        server named and the password masked.
        """
        mail, s = self.mail, self.settings
        ok = mail.send_direct_email(
            to=to,
            subject="Test mail from %s" % site,
            message="This is a test message sent from %s at %s UTC with the "
            "settings in %s." % (site, utcnow(), config_file(s)),
        )
        host, port = Snapshot(s).host_port
        where = "%s:%s" % (host, port) if host else "(no server)"
        if ok:
            text = "The server %s accepted the test mail to %s: %s" % (where, to, mail.reply)
            if mail.result:
                text += " It refused: %s" % "; ".join(
                    "%s: %s" % item for item in sorted(mail.result.items())
                )
        else:
            text = "The test mail to %s was not sent. Server %s: %s" % (to, where, mail.error)
        return ok, scrub(text, s)

    # --------------------------------------------------------------- chart
    def activity(self, hours=24, bucket=3600, now=None):
        """Delivery attempts per time bucket over the last ``hours``, by
        outcome: a list of (bucket start, dict(sent=, retry=, held=,
        failed=)), oldest first. ``retry``: deferred by the server, tried
        again later; ``held``: stopped by the settings or an unreachable
        server. Attempts, not messages: one message may count in several.
        """
        now = now or utcnow()
        buckets = int(hours * 3600 // bucket)
        end = (
            now.replace(minute=0, second=0) + datetime.timedelta(hours=1)
            if bucket % 3600 == 0
            else now
        )
        start = end - datetime.timedelta(seconds=buckets * bucket)
        series = [dict((key, 0) for key, _, _ in COLOURS) for _ in range(buckets)]
        for slot_no, outcome, count in self.store.attempts_by_slot(start, end, bucket):
            slot_no = int(slot_no)
            if outcome in series[0] and 0 <= slot_no < buckets:
                series[slot_no][outcome] += int(count)
        return [
            (start + datetime.timedelta(seconds=i * bucket), series[i]) for i in range(buckets)
        ]


# ------------------------------------------------------------------ chart
# (attempt outcome, colour, label): each series counts the attempts of its
# outcome in the attempt log, and says so.
COLOURS = (
    (Logged.SENT, "#2e8540", "sent"),
    (Logged.RETRY, "#e0a526", "deferred, retried"),
    (Logged.HELD, "#7f8c8d", "held"),
    (Logged.FAILED, "#c0392b", "failed"),
)


def chart_svg(activity, width=720, height=180, title="Delivery attempts per hour (UTC)"):
    """Stacked bars of attempts by outcome per bucket, as inline SVG.

    Plain SVG text with a <title> per bar (the browser shows it on hover);
    no script, no external file.
    """
    box = _Box(
        width, height, len(activity), _nice(max([sum(v.values()) for _, v in activity] + [1]))
    )
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        'viewBox="0 0 %d %d" width="100%%" aria-label="%s">' % (width, height, escape(title)),
        '<text x="%d" y="14" class="chart-title">%s</text>' % (box.left, escape(title)),
    ]
    out += _grid(box) + _legend(box)
    every = max(1, box.n // 8)
    for i, (start, values) in enumerate(activity):
        out += _bar(box, i, start, values)
        if i % every == 0:
            out.append(
                '<text x="%.1f" y="%d" text-anchor="middle" class="chart-axis">'
                "%s</text>"
                % (box.left + (i + 0.5) * box.slot, height - 6, start.strftime("%H:%M"))
            )
    out.append("</svg>")
    return "".join(out)


class _Box:
    """The chart's geometry: margins, plot size, bar slots and the axis top."""

    left, right, top, bottom = 40, 10, 24, 24

    def __init__(self, width, height, n, scale):
        self.width, self.height, self.n, self.scale = width, height, max(1, n), scale
        self.plot_w = width - self.left - self.right
        self.plot_h = height - self.top - self.bottom
        self.slot = self.plot_w / float(self.n)
        self.bar = max(1.0, self.slot * 0.8)


def _grid(box):
    """Horizontal lines at 0, half and the top, with their values."""
    out = []
    for frac in (0, 0.5, 1):
        y = box.top + box.plot_h * (1 - frac)
        out.append(
            '<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#d5d9de"/>'
            % (box.left, box.width - box.right, y, y)
        )
        out.append(
            '<text x="%d" y="%.1f" text-anchor="end" class="chart-axis">%s'
            "</text>" % (box.left - 4, y + 4, _num(box.scale * frac))
        )
    return out


def _legend(box):
    out = []
    legend_x = box.width - box.right
    for _key, colour, label in reversed(COLOURS):
        legend_x -= 8 + 7 * len(label) + 14
        out.append(
            '<rect x="%d" y="5" width="10" height="10" fill="%s"/>'
            '<text x="%d" y="14" class="chart-axis">%s</text>'
            % (legend_x, colour, legend_x + 14, escape(label))
        )
    return out


def _bar(box, i, start, values):
    """Bucket ``i``: its stacked rectangles under one hover title."""
    x = box.left + i * box.slot + (box.slot - box.bar) / 2
    y = box.top + box.plot_h
    tip = "%s: %s" % (
        start.strftime("%Y-%m-%d %H:%M"),
        ", ".join("%d %s" % (values[k], label) for k, _, label in COLOURS),
    )
    out = ["<g><title>%s</title>" % escape(tip)]
    for key, colour, _ in COLOURS:
        h = box.plot_h * values[key] / float(box.scale)
        if h > 0:
            y -= h
            out.append(
                '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" '
                'fill="%s" class="bar-%s"/>' % (x, y, box.bar, h, colour, key)
            )
    out.append(
        '<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="transparent"/>'
        "</g>" % (box.left + i * box.slot, box.top, box.slot, box.plot_h)
    )
    return out


def _nice(peak):
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= peak: a readable axis top."""
    step = 1
    while True:
        for m in (1, 2, 2.5, 5):
            if m * step >= peak:
                return m * step
        step *= 10


def _num(value):
    return ("%d" % value) if value == int(value) else ("%.1f" % value)
