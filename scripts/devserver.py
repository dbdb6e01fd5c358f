"""``./dev run``: web server, scheduler worker and SMTP catcher, together.

Ctrl-C (or SIGTERM) stops all three. The runtime folder lives outside the
source tree (default ~/.cache/outbox/web2py) with this app linked in.
"""

import argparse
import configparser
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runtime  # noqa: E402


def catcher_port():
    """The port of [smtp] server in private/appconfig.ini, if it is local."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(os.path.join(runtime.APP_DIR, "private", "appconfig.ini"))
    host, _, port = config.get("smtp", "server", fallback="").rpartition(":")
    if host in ("127.0.0.1", "localhost") and port.isdigit():
        return int(port)
    print(
        "[smtp] server in private/appconfig.ini is not on this machine; "
        "the catcher listens on 127.0.0.1:8025 anyway"
    )
    return 8025


def in_use(port):
    """Whether a program already listens on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ports_taken(web_port, smtp_port):
    """What to tell the admin about ports of the three that are taken.

    The catcher does not move to a free port by itself: the site sends to
    [smtp] server, so its mail would go to whatever program holds that port
    (another developer's catcher, say)."""
    lines = []
    if in_use(smtp_port):
        lines.append(
            "127.0.0.1:%d, where [smtp] server in private/appconfig.ini sends the "
            "site's mail, is in use by another program. Stop it, or set [smtp] "
            "server = 127.0.0.1:%d (a free port): the catcher listens where that "
            "setting points." % (smtp_port, free_port())
        )
    if in_use(web_port):
        lines.append(
            "127.0.0.1:%d is in use by another program: ./dev run --port %d (a free port)."
            % (web_port, free_port())
        )
    return "\n".join(lines)


def wait_for_site(url, web, timeout=60):
    """Until the first page has loaded: that request runs the models, which
    create the tables, so the worker does not create them at the same moment
    (on SQLite the two would lock each other)."""
    deadline = time.time() + timeout
    while time.time() < deadline and web.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=10).close()
            return
        except urllib.error.HTTPError:
            return  # an error page too came after the models ran
        except OSError:
            time.sleep(0.2)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="./dev run")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    parser.add_argument("--runtime", default=os.environ.get("OUTBOX_RUNTIME"))
    args = parser.parse_args(argv)
    smtp_port = catcher_port()
    taken = ports_taken(args.port, smtp_port)
    if taken:
        print(taken, file=sys.stderr)
        return 2
    tag = hashlib.sha1(runtime.APP_DIR.encode()).hexdigest()[:8]
    folder = args.runtime or os.path.join(
        os.path.expanduser("~"), ".cache", "outbox", "web2py-" + tag
    )
    runtime.build(folder)
    py = sys.executable
    w2p = os.path.join(folder, "web2py.py")
    mails = os.path.join(folder, "mail")
    procs = []

    def start(name, cmd):
        procs.append((name, subprocess.Popen(cmd, cwd=folder)))

    start(
        "smtp",
        [
            py,
            os.path.join(runtime.APP_DIR, "scripts", "smtpsink.py"),
            "--port",
            str(smtp_port),
            "--folder",
            mails,
        ],
    )
    # The admin app is not installed; web2py still wants a password argument.
    start(
        "web",
        [
            py,
            w2p,
            "--no_gui",
            "-i",
            "127.0.0.1",
            "-p",
            str(args.port),
            "-a",
            secrets.token_hex(16),
        ],
    )
    base = "http://127.0.0.1:%d/outbox" % args.port
    wait_for_site(base + "/default/index", procs[-1][1])
    # The delivery task's own group: its loop never ends, so mail never
    # waits for a task assignment (the app has no other tasks to serve).
    start("worker", [py, w2p, "--no_gui", "-K", "outbox:s3outbox"])
    print(
        "\n  Site:      %s/default/index\n  Register:  %s/default/user/register\n"
        "  Dashboard: %s/outbox/index (members of 'admin'; the first user to "
        "register on a new database is one)\n  Mail:      caught on 127.0.0.1:%d, "
        "printed here and saved in %s\n  Ctrl-C stops everything.\n"
        % (base, base, base, smtp_port, mails),
        flush=True,
    )

    stopping = []

    def stop(*_):
        stopping.append(True)

    signal.signal(signal.SIGTERM, stop)
    interrupted = False
    try:
        while not stopping:
            for name, p in procs:
                if p.poll() is not None:
                    print("%s exited with %s; stopping" % (name, p.returncode))
                    stopping.append(True)
            time.sleep(0.5)
    except KeyboardInterrupt:
        interrupted = True  # Ctrl-C reached the three processes too
    # One signal each: the worker ends its delivery pass, records it and exits
    # (a second would kill its task); whatever runs after 10 s is killed.
    for _name, p in procs:
        if p.poll() is None and not interrupted:
            p.terminate()
    deadline = time.time() + 10
    while time.time() < deadline and any(p.poll() is None for _, p in procs):
        time.sleep(0.2)
    for _name, p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
