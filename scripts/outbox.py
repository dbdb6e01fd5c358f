"""The outbox from the command line, for a server without a browser.

Run from the web2py folder (it loads the app's models, so the settings and
database are the site's own):

    python web2py.py --no_banner -S outbox -M -R applications/outbox/scripts/outbox.py -A status

Commands (after -A): status | list [--status S] [--address TEXT] [--limit N]
[--before ID] | show ID | retry ID... or --status failed|held | cancel ID...
or --status queued|held|failed | purge DAYS | test ADDRESS | pause | resume |
make-admin EMAIL | bounces [--address TEXT] [--kind bounced|delayed]
[--limit N] [--before ID] [--read] (--read: read the bounce mailbox now, then
list).
Exit status: 0 done, 1 the test mail was not sent, 2 bad arguments or no
such message or user, with a one-line error. Account mail is shown redacted.
"""

import argparse
import os
import sys

from s3outbox.accounts.admins import make_admin
from s3outbox.admin.outbox import CANCELLABLE, RETRYABLE, OutboxAdmin, format_age
from s3outbox.admin.params import MAX_DAYS, MAX_LIST, BadParameter, one_text, whole_number
from s3outbox.bounces import reader as outbox_bounces
from s3outbox.delivery.store import STATUSES, utcnow


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line: ``error: ...``, exit 2."""

    def error(self, message):
        print("error: %s (see --help)" % message, file=sys.stderr)
        raise SystemExit(2)


def _checked(check, name, *args):
    """An argparse type from a check of admin/params.py (one sentence when refused)."""

    def convert(text):
        try:
            return check(text, name, *args)
        except BadParameter as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = name
    return convert


MESSAGE_ID = _checked(whole_number, "a message number", 1)


def _parser():
    p = _Parser(
        prog="web2py.py -S outbox -M -R applications/outbox/scripts/outbox.py -A",
        description="See and fix the mail outbox.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="counts, hold, settings check")
    ls = sub.add_parser("list", help="messages, newest first")
    ls.add_argument("--status", choices=STATUSES)
    ls.add_argument(
        "--address", help="part of the recipient address", type=_checked(one_text, "--address")
    )
    ls.add_argument("--limit", type=_checked(whole_number, "--limit", 1, MAX_LIST), default=20)
    ls.add_argument("--before", type=MESSAGE_ID, help="only messages numbered below this")
    show = sub.add_parser("show", help="one message, its text (keys redacted), attempts")
    show.add_argument("id", type=MESSAGE_ID)
    for name, allowed, what in (
        ("retry", RETRYABLE, "queue failed or held messages for delivery now"),
        ("cancel", CANCELLABLE, "cancel queued, held or failed messages"),
    ):
        cmd = sub.add_parser(name, help="%s, by number or --status" % what)
        cmd.add_argument("ids", type=MESSAGE_ID, nargs="*")
        cmd.add_argument("--status", choices=allowed)
    purge = sub.add_parser("purge", help="delete sent mail older than DAYS days")
    purge.add_argument("days", type=_checked(whole_number, "days", 0, MAX_DAYS))
    test = sub.add_parser("test", help="send a test mail now, show the answer")
    test.add_argument("address")
    sub.add_parser("pause", help="stop delivery by every worker until resume")
    sub.add_parser("resume", help="let delivery go on after pause")
    admin = sub.add_parser("make-admin", help="add a registered user to 'admin'")
    admin.add_argument("email")
    bl = sub.add_parser("bounces", help="delivery reports: addresses that bounced")
    bl.add_argument(
        "--address", help="part of the recipient address", type=_checked(one_text, "--address")
    )
    bl.add_argument("--kind", choices=[str(k) for k in outbox_bounces.KINDS])
    bl.add_argument("--limit", type=_checked(whole_number, "--limit", 1, MAX_LIST), default=20)
    bl.add_argument("--before", type=MESSAGE_ID, help="only reports numbered below this")
    bl.add_argument(
        "--read", action="store_true", help="read the bounce mailbox now (one pass) before listing"
    )
    return p


def bounce_list(args, out):
    """The reported failures, newest first; with --read a reader pass first."""
    if args.read:
        c = outbox_bounces.read_bounces(mail)  # noqa: F821 (web2py model globals)
        out(
            "Read %d report(s): %d matched (%d bounced, %d delayed), %d messages "
            "marked bounced, %d left in the mailbox.%s"
            % (
                c["read"],
                c["matched"],
                c["bounced"],
                c["delayed"],
                c["marked"],
                c["skipped"],
                " Error: %s" % c["error"] if c["error"] else "",
            )
        )
    rows, older = outbox_bounces.page(
        mail,
        address=args.address,  # noqa: F821
        kind=args.kind,
        before=args.before,
        size=args.limit,
    )
    out("Bounced (5.x.x) reports: %d" % outbox_bounces.count(mail))  # noqa: F821
    for r in rows:
        out(
            "%8d  %s  %-7s  %-6s  %-32s  message %d (%s)  %s"
            % (
                r["id"],
                r["received_on"],
                r["kind"],
                r["status"],
                (r["recipient"] or "(not named)")[:32],
                r["outbox_id"],
                r["message_status"],
                (r["diagnostic"] or "")[:80],
            )
        )
    if not rows:
        out("No delivery reports.")
    elif older:
        out("More: add --before %d" % older)


def status(outbox, out):
    o = outbox.overview()
    counts = o["counts"]
    out("Messages: " + ", ".join("%s %d" % (s, counts[s]) for s in STATUSES))
    out(
        "Oldest waiting: %s"
        % (
            "%s ago (queued %s UTC)" % (format_age(o["oldest_age"]), o["oldest"])
            if o["oldest"]
            else "none"
        )
    )
    r = o["recent"]
    out(
        "Attempts that sent a message: %d last hour, %d last day. Attempts that "
        "failed one: %d last hour, %d last day."
        % (r["hour"]["sent"], r["day"]["sent"], r["hour"]["failed"], r["day"]["failed"])
    )
    s = o["settings"]
    out(
        "Settings: server %s, sender %s, login %s, tls %s, ssl %s"
        % (
            s["server"] or "(none)",
            s["sender"] or "(none)",
            s["login"],
            "on" if s["tls"] else "off",
            "on" if s["ssl"] else "off",
        )
    )
    out("Limits: %s" % s["limits"])
    if o["paused"]:
        out(
            "PAUSED: delivery paused by %s since %s UTC (resume: -A resume)"
            % (o["paused"].get("by"), o["paused"].get("since"))
        )
    held = o["held"]
    if held:
        out("HELD: %d message(s): %s" % (held["count"], held["reason"]))
        out("  Edit %s in %s." % (held["edit"], held["file"]))
        if held["settings_changed"]:
            out(
                "  The settings changed since: the next pass tries them and "
                "releases it once the server answers."
            )
    for f in o["findings"]:
        out(
            "SETTINGS: %s (edit %s)%s"
            % (f["problem"], f["where"], " - blocks all mail" if f["blocking"] else "")
        )
    if not o["findings"]:
        out("Settings check: no problem found.")


def listing(outbox, args, out):
    page = outbox.page(
        status=args.status, address=args.address, before=args.before, size=args.limit
    )
    for r in page.rows:
        when = r.sent_on if r.status == "sent" else r.next_attempt_on
        out(
            "%8d  %s  %-9s  %-32s  %2d  %s  %s"
            % (
                r.id,
                r.created_on,
                r.status,
                (r.address or "pe_id %s" % r.pe_id)[:32],
                r.tries,
                when or "",
                (r.last_error or r.subject or "")[:60],
            )
        )
    if not page.rows:
        out("No messages.")
    elif page.older:
        out("More: add --before %d" % page.older)


def show(outbox, number, out):
    m = outbox.message(number)
    if m is None:
        raise LookupError("no message %d" % number)
    r, c = m["row"], m["content"]
    out("Message %d: %s" % (r.id, r.status))
    out("  To: %s" % (", ".join(c.get("to") or []) or "pe_id %s" % r.pe_id))
    out("  Subject: %s" % r.subject)
    out("  Message-ID: %s" % r.message_id)
    out(
        "  Queued: %s UTC; tries %d; next %s; sent %s"
        % (r.created_on, r.tries, r.next_attempt_on, r.sent_on or "-")
    )
    if r.last_error:
        out("  Last error: %s" % r.last_error)
    for address, outcome, reply in m["recipients"]:
        out("  %-8s %s%s" % (outcome, address, ": %s" % reply if reply else ""))
    for a in m["attempts"]:
        out(
            "  %s  %-7s %4s  %s  %s"
            % (a.attempted_on, a.outcome, a.code or "", a.worker or "", a.error or "")
        )
    body = c.get("text") or c.get("html") or ""
    if body:
        out("  Text:")
        for line in body[:4000].splitlines():
            out("    " + line)


def main(argv, out=print):
    args = _parser().parse_args(argv)
    outbox = OutboxAdmin(mail)  # noqa: F821 (web2py model globals)
    who = "command line"
    if args.command == "status":
        status(outbox, out)
    elif args.command == "list":
        listing(outbox, args, out)
    elif args.command == "show":
        show(outbox, args.id, out)
    elif args.command in ("retry", "cancel"):
        if bool(args.ids) == bool(args.status):
            raise ValueError("give message numbers or --status, not both or neither")
        act = outbox.retry if args.command == "retry" else outbox.cancel
        n = act(ids=args.ids, status=args.status, who=who)
        out(
            "%d message(s) %s."
            % (n, "queued for delivery now" if args.command == "retry" else "cancelled")
        )
        if args.ids and n < len(set(args.ids)):
            out("%d skipped (not in a state that allows it)." % (len(set(args.ids)) - n))
    elif args.command == "purge":
        n, attempts, files = outbox.purge(args.days, who=who)
        out(
            "Purged %d sent message(s) older than %d day(s), %d attempt record(s), "
            "%d attachment(s)." % (n, args.days, attempts, files)
        )
    elif args.command == "test":
        ok, text = outbox.test_mail(
            args.address,
            site="%s (command line, %s UTC)" % (APP_NAME or "the outbox", utcnow()),
        )  # noqa: F821
        out(text)
        return 0 if ok else 1
    elif args.command in ("pause", "resume"):
        done = getattr(outbox, args.command)(who=who)
        out(
            "Delivery %s."
            % (
                {"pause": "paused", "resume": "resumed"}[args.command]
                if done
                else "was %s already" % ("paused" if args.command == "pause" else "running")
            )
        )
    elif args.command == "make-admin":
        out(make_admin(auth, args.email))  # noqa: F821
    elif args.command == "bounces":
        bounce_list(args, out)
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except (LookupError, ValueError) as e:
        print("error: %s" % e, file=sys.stderr)
        code = 2
    except SystemExit as e:  # argparse: --help or a usage error
        code = e.code if isinstance(e.code, int) else 2
    if code:
        db.rollback() if code == 2 else db.commit()  # noqa: F821
        sys.stdout.flush()
        sys.stderr.flush()
        # web2py's -R prints a traceback for SystemExit; leave quietly instead.
        os._exit(code)
    db.commit()  # noqa: F821
