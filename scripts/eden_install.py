#!/usr/bin/env python3
"""Install the outbox into a Sahana Eden application, or take it out again.

    python scripts/eden_install.py EDEN_APP_DIR              # install or update
    python scripts/eden_install.py EDEN_APP_DIR --uninstall  # restore Eden
    python scripts/eden_install.py EDEN_APP_DIR --uninstall --force  # mail waiting

Standard library only, so the Python that runs Eden runs it. It copies
modules/s3outbox/, the dashboard (views/outbox/, and controllers/outbox.py:
eden/controllers/outbox.py around the app's own controller) and
adds marked blocks to Eden's files (see EDITS). Running it again changes
nothing more (a newer checkout updates what it installed); --uninstall deletes
the delivery task from Eden's scheduler (through Eden's models, so it refuses
while mail is waiting unless --force), then removes the blocks and the
copied files, leaving Eden's files byte for byte as they were. Nothing is written until every check
passed, and an edited Python file must compile before it is written.
"""

import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "# s3outbox:begin", "# s3outbox:end"
NOTE = " (scripts/eden_install.py; --uninstall removes this block)"
HEADER = "s3outbox: the mail outbox dashboard in Sahana Eden"

# (Eden file, line to insert after, lines to insert, keep its indent, why)
EDITS = (
    (
        "models/000_1st_run.py",
        "appname = request.application",
        # Eden's first model: before anything parses the form. Eden takes
        # uploads, but not on its account pages or the outbox dashboard.
        [
            "from s3outbox.accounts.requestcheck import EDEN_MAX_BODY, check_body",
            "check_body(request, max_body=EDEN_MAX_BODY, uploads=request.function != "
            '"user" and request.controller != "outbox")',
        ],
        False,
        "a request with too many fields or too large a body is refused (413) before "
        "web2py parses it; no file in a text field (400)",
    ),
    (
        "models/00_db.py",
        "mail = current.mail = Mail()",
        ["from s3outbox.eden import EdenMail", "mail = current.mail = EdenMail(db)"],
        False,
        "current.mail is the outbox: send() queues, workers deliver",
    ),
    (
        "models/00_db.py",
        "current.auth = auth = s3base.AuthS3()",
        ["from s3outbox.accounts.edenguard import guard", "guard(auth, mail)"],
        False,
        "every request's Host and parameters checked; reset, registration and "
        "username mail limited, one answer for known and unknown addresses",
    ),
    (
        "models/00_settings.py",
        "auth_settings.mailer = mail",
        ["auth_settings.mailer = mail  # also before settings.mail.sender is set"],
        False,
        "Auth's mail (verification, reset) queues whatever the mail settings",
    ),
    (
        "models/tasks.py",
        "current.s3task = s3task",
        ["from s3outbox.eden import register_task", "register_task(tasks, s3task)"],
        False,
        "delivery task s3outbox_deliver in its own scheduler group (s3outbox)",
    ),
    (
        "modules/core/ui/menus.py",
        'M("Scheduler", c="admin", f="task"),',
        # c="admin": a link to a controller that is not an Eden module is hidden
        ['M("Mail Outbox", c="admin", f="outbox", url=URL(c="outbox", f="index")),'],
        True,
        "'Mail Outbox' in the admin menu",
    ),
)
# (from this checkout, to the Eden application)
COPIES = (
    ("modules/s3outbox", "modules/s3outbox"),
    ("views/outbox", "views/outbox"),
)
# Eden's dashboard controller: Eden's part with the app's controller included.
CONTROLLER = ("eden/controllers/outbox.py", "controllers/outbox.py")
INCLUDE = "# s3outbox:include "
EDEN_FILES = (
    "models/00_db.py",
    "models/000_1st_run.py",
    "modules/s3cfg.py",
    "modules/core/msg/base.py",
    "controllers/default.py",
)


class Refused(Exception):
    """A reason to change nothing."""


def is_eden(app):
    missing = [f for f in EDEN_FILES if not os.path.isfile(os.path.join(app, f))]
    if missing:
        raise Refused(
            "%s is not a Sahana Eden application (no %s). Give Eden's application "
            "folder, e.g. web2py/applications/eden, the one that holds "
            "models/00_db.py and modules/s3cfg.py." % (app, ", ".join(missing))
        )


def read(path):
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def write(path, text):
    tmp = path + ".s3outbox-tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    shutil.copymode(path, tmp)
    os.replace(tmp, path)


def edit_file(text, edits, name):
    """``text`` with the marked blocks of ``edits`` ((anchor, lines, indent)
    each), replacing the blocks an older version added; None if they are
    there already."""
    original, new = text, remove_block(text)
    for anchor, lines, indent in edits:
        new = insert_block(new, anchor, lines, indent, name)
    if name.endswith(".py"):
        try:
            compile(new, name, "exec")
        except SyntaxError as e:
            raise Refused(
                "%s would not compile after the edit (%s); nothing was changed" % (name, e)
            ) from None
    return None if new == original else new


def insert_block(text, anchor, lines, indent, name):
    """``text`` with a marked block after the line ``anchor``."""
    source = text.splitlines(keepends=True)
    found = [i for i, line in enumerate(source) if line.strip() == anchor]
    if len(found) != 1:
        raise Refused(
            "%s: expected one line '%s' to add the outbox after, found %d "
            "(a changed Eden?). Make the edits by hand: see docs/eden.md, "
            "'The edits, by hand'." % (name, anchor, len(found))
        )
    at = found[0]
    line = source[at]
    eol = line[len(line.rstrip("\r\n")) :] or "\n"
    pad = line[: len(line) - len(line.lstrip())] if indent else ""
    block = [BEGIN + NOTE] + lines + [END]
    if not source[at].endswith(("\n", "\r")):
        source[at] += eol
    source[at + 1 : at + 1] = [pad + b + eol for b in block]
    return "".join(source)


def remove_block(text):
    """``text`` without the marked blocks (exactly as before they were added)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            skipping = True
        elif skipping and stripped == END:
            skipping = False
        elif not skipping:
            out.append(line)
    return "".join(out)


def source_files(src):
    """(relative path, absolute path) of the files to copy from ``src``."""
    if os.path.isfile(src):
        return [("", src)]
    found = []
    for folder, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")):
                path = os.path.join(folder, name)
                found.append((os.path.relpath(path, src), path))
    return found


def remove_stale(folder, wanted):
    """Delete the files under ``folder`` (a copy of ours) that this version
    does not have, e.g. modules of an older layout, and compiled files, which
    Python writes again; their count."""
    removed = 0
    for here, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            path = os.path.join(here, name)
            if os.path.relpath(path, folder) not in wanted:
                os.remove(path)
                removed += not name.endswith((".pyc", ".pyo"))
        if here != folder and not os.listdir(here):
            os.rmdir(here)
    return removed


def check_copies(app):
    """Refuse to overwrite a controller or view of Eden's own."""
    controller = os.path.join(app, "controllers", "outbox.py")
    if os.path.exists(controller) and HEADER not in read(controller):
        raise Refused("%s exists and is not the outbox's: not overwriting it" % controller)
    views = os.path.join(app, "views", "outbox")
    ours = {rel for rel, _ in source_files(os.path.join(SOURCE, "views", "outbox"))}
    if os.path.isdir(views):
        theirs = {
            os.path.relpath(os.path.join(d, f), views)
            for d, _, files in os.walk(views)
            for f in files
        }
        if theirs - ours:
            raise Refused("%s holds views that are not the outbox's: not overwriting it" % views)


def controller_text():
    """eden/controllers/outbox.py with its INCLUDE line replaced by the file
    it names, so that Eden runs the app's own dashboard code."""
    out = []
    for line in read(os.path.join(SOURCE, CONTROLLER[0])).splitlines(keepends=True):
        if line.startswith(INCLUDE):
            name = line[len(INCLUDE) :].strip()
            out.append("# ---- %s of s3outbox, as it is ----\n" % name)
            out.append(read(os.path.join(SOURCE, name)))
            out.append("# ---- end of %s ----\n" % name)
        else:
            out.append(line)
    return "".join(out)


def install(app):
    is_eden(app)
    check_copies(app)
    controller = controller_text()
    compile(controller, CONTROLLER[1], "exec")
    edits = []
    for name in edited_files():
        mine = [e for e in EDITS if e[0] == name]
        path = os.path.join(app, name)
        text = read(path)
        new = edit_file(
            text, [(anchor, lines, indent) for _, anchor, lines, indent, _ in mine], name
        )
        edits.append(
            (
                name,
                path,
                new,
                BEGIN in text,
                sum(len(e[2]) + 2 for e in mine),
                "; ".join(e[4] for e in mine),
            )
        )
    print("Installing the outbox into %s" % app)  # nothing refused it
    for src, dst in COPIES:
        files = source_files(os.path.join(SOURCE, src))
        changed = 0
        for rel, path in files:
            target = os.path.join(app, dst, rel) if rel else os.path.join(app, dst)
            if os.path.isfile(target) and filecmp.cmp(path, target, shallow=False):
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(path, target)
            changed += 1
        if os.path.isdir(os.path.join(SOURCE, src)):
            changed += remove_stale(os.path.join(app, dst), {rel for rel, _ in files})
        what = (
            "%s/ (%d files)" % (dst, len(files))
            if os.path.isdir(os.path.join(SOURCE, src))
            else dst
        )
        print("  %-9s %s" % ("copied" if changed else "unchanged", what))
    target = os.path.join(app, CONTROLLER[1])
    same = os.path.isfile(target) and read(target) == controller
    if not same:
        with open(target, "w", encoding="utf-8", newline="") as f:
            f.write(controller)
    print("  %-9s %s" % ("unchanged" if same else "copied", CONTROLLER[1]))
    for name, path, new, older, added, why in edits:
        if new is None:
            print("  %-9s %s (already wired in)" % ("unchanged", name))
        else:
            write(path, new)
            print(
                "  %-9s %s (+%d lines): %s" % ("updated" if older else "edited", name, added, why)
            )


def models_failed(output):
    """Why Eden's models did not run, from their output; a module missing
    most likely means another Python than Eden's (./dev eden-install runs
    python3.11 from PATH)."""
    hint = ""
    if "ModuleNotFoundError" in output:
        hint = (
            " under %s, which lacks a module Eden needs: run this with the "
            "Python that runs Eden (PYTHON=... ./dev eden-install)" % sys.executable
        )
    return "Eden's models failed%s:\n%s" % (hint, output[-2000:])


def retire(app, force):
    """Delete the delivery task from Eden's scheduler, through Eden's own
    models (a web2py shell: its database, whatever it is); refused while mail
    waits unless ``force``. Nothing to do where the outbox is not installed."""
    if not os.path.isdir(os.path.join(app, "modules", "s3outbox")):
        return
    root = os.path.dirname(os.path.dirname(app))
    web2py = os.path.join(root, "web2py.py")
    found = None
    if os.path.isfile(web2py):
        done = subprocess.run(
            [
                sys.executable,
                web2py,
                "--no_banner",
                "-S",
                os.path.basename(app),
                "-M",
                "-R",
                os.path.join(SOURCE, "scripts", "eden_retire.py"),
                "-A",
            ]
            + (["force"] if force else []),
            cwd=root,
            capture_output=True,
            text=True,
        )
        found = re.search(r"(?m)^s3outbox-retire=(.*)$", done.stdout)
    if found is None:
        why = (
            "no web2py.py in %s" % root
            if not os.path.isfile(web2py)
            else models_failed(done.stdout + done.stderr)
        )
        if not force:
            raise Refused(
                "could not reach Eden's database to check for waiting mail "
                "and remove the delivery task (%s). Nothing was changed. "
                "--uninstall --force removes the files anyway; then delete "
                "the task s3outbox-s3outbox_deliver-1 in Eden's Scheduler "
                "(Administration > Scheduler)." % why
            )
        print(
            "  %-9s the delivery task: delete s3outbox-s3outbox_deliver-1 in "
            "Eden's Scheduler (%s)" % ("kept", why)
        )
        return
    report = json.loads(found.group(1))
    waiting = sum(report["waiting"].values())
    if waiting and not force:
        raise Refused(waiting_text(app, report, waiting))
    if waiting:
        print(
            "  %-9s %d waiting message(s): %d handed back to Eden's Messaging "
            "outbox (Unsent there), %d cancelled"
            % ("stopped", waiting, report["from_eden"], waiting - report["from_eden"])
        )
    print(
        "  %-9s the delivery task s3outbox_deliver (%d scheduler row(s))"
        % ("removed", report["removed"])
    )


def waiting_text(app, report, waiting):
    """Why --uninstall refuses while mail waits, and the two ways on."""
    name = os.path.basename(app)
    parts = ", ".join("%d %s" % (n, s) for s, n in sorted(report["waiting"].items()))
    paused = " Delivery is paused: resume it on the dashboard first." if report["paused"] else ""
    return (
        "%d message(s) are waiting in the outbox (%s); %d of them came from Eden's "
        "Messaging outbox. Nothing was changed.\n"
        "To let them drain: keep the outbox's worker running (python web2py.py -K "
        "%s:s3outbox) until the dashboard (/%s/outbox/index) shows none queued or "
        "held (held mail needs working settings.mail.* in models/000_config.py, or "
        "cancel it there), then run --uninstall again.%s\n"
        "To hand them back: --uninstall --force. The %d from Eden's Messaging are "
        "Unsent again in Eden's msg_outbox and Eden's own process_outbox sends them; the "
        "other %d (account mail such as verification and reset, and direct "
        "mail.send() calls) are cancelled and not sent. Stop the outbox's worker "
        "first."
        % (
            waiting,
            parts,
            report["from_eden"],
            name,
            name,
            paused,
            report["from_eden"],
            waiting - report["from_eden"],
        )
    )


def edited_files():
    """The Eden files EDITS changes, each once, in order."""
    return sorted({e[0] for e in EDITS}, key=[e[0] for e in EDITS].index)


def public_url_note(app):
    """A warning when Eden's config has no public URL: Eden then answers only
    to its host_names (loopback by default)."""
    path = os.path.join(app, "models", "000_config.py")
    if not os.path.isfile(path):
        return (
            "Note: there is no models/000_config.py yet. When you create it from "
            "modules/templates/000_config.py, set settings.base.public_url, e.g. "
            '"https://eden.example.org": without it Eden answers only to localhost, '
            "127.0.0.1 and [::1] (any other Host gets 403)."
        )
    for line in read(path).splitlines():
        if line.strip().startswith(("settings.base.public_url", "settings.base.host_names")):
            return None
    return (
        "Note: models/000_config.py sets no settings.base.public_url: Eden now "
        "answers only to localhost, 127.0.0.1 and [::1] (any other Host gets "
        "403) until it is set, e.g. settings.base.public_url = "
        '"https://eden.example.org".'
    )


def uninstall(app, force=False):
    is_eden(app)
    retire(app, force)  # refuses before anything is removed
    print("Removing the outbox from %s" % app)
    for name in edited_files():
        path = os.path.join(app, name)
        text = read(path)
        if BEGIN in text:
            write(path, remove_block(text))
            print("  %-9s %s" % ("restored", name))
    package = os.path.join(app, "modules", "s3outbox")
    if os.path.isdir(package):
        shutil.rmtree(package)
        print("  %-9s modules/s3outbox/" % "removed")
    controller = os.path.join(app, "controllers", "outbox.py")
    if os.path.isfile(controller) and HEADER in read(controller):
        os.remove(controller)
        print("  %-9s controllers/outbox.py" % "removed")
    views = os.path.join(app, "views", "outbox")
    for rel, _ in source_files(os.path.join(SOURCE, "views", "outbox")):
        target = os.path.join(views, rel)
        if os.path.isfile(target):
            os.remove(target)
    if os.path.isdir(views) and not os.listdir(views):
        os.rmdir(views)
        print("  %-9s views/outbox/" % "removed")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Install the s3outbox mail outbox into a Sahana Eden "
        "application (or --uninstall it)."
    )
    parser.add_argument(
        "app",
        metavar="EDEN_APP_DIR",
        help="Eden's application folder, e.g. web2py/applications/eden",
    )
    parser.add_argument(
        "--uninstall",
        action="store_true",
        help="remove the outbox and its delivery task and restore "
        "Eden's files (refused while mail is waiting)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --uninstall: even while mail is waiting (Eden's "
        "Messaging gets its own back, the rest is cancelled)",
    )
    args = parser.parse_args(argv)
    app = os.path.abspath(args.app)
    try:
        if not os.path.isdir(app):
            raise Refused("%s is not a folder" % app)
        if args.force and not args.uninstall:
            raise Refused("--force goes with --uninstall only")
        if args.uninstall:
            uninstall(app, args.force)
            print(
                "Done: Eden's files are as they were. Its msg_mail_outbox* "
                "tables stay in the database."
            )
        else:
            install(app)
            name = os.path.basename(app)
            print(
                "Done. Restart web2py, and run the outbox's worker beside Eden's "
                "own:\n  python web2py.py -K %s:s3outbox   # delivers mail, "
                "never ends\n  python web2py.py -K %s            # Eden's tasks, "
                "as before\nDashboard (ADMIN role): /%s/outbox/index. Mail "
                "settings: settings.mail.* in models/000_config.py." % (name, name, name)
            )
            note = public_url_note(app)
            if note:
                print(note)
    except Refused as e:
        print("eden_install: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
