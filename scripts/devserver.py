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


def wait_for_site(url, web, stopping, timeout=60):
    """Until the first page has loaded: that request runs the models, which
    create the tables, so the worker does not create them at the same moment
    (on SQLite the two would lock each other)."""
    deadline = time.time() + timeout
    while time.time() < deadline and web.poll() is None and not stopping:
        try:
            urllib.request.urlopen(url, timeout=10).close()
            return
        except urllib.error.HTTPError:
            return  # an error page too came after the models ran
        except OSError:
            time.sleep(0.2)


def start_all(port, smtp_port, folder, procs, stopping):
    """The catcher, the web server and, once the site answers, the worker
    (each appended to ``procs`` as it starts; none more once ``stopping``)."""
    py = sys.executable
    w2p = os.path.join(folder, "web2py.py")
    mails = os.path.join(folder, "mail")

    def start(name, cmd):
        # A session of its own: a terminal's Ctrl-C reaches ./dev run only,
        # which stops each process with one SIGTERM (a process Ctrl-C met
        # while it was importing printed a KeyboardInterrupt traceback).
        procs.append((name, subprocess.Popen(cmd, cwd=folder, start_new_session=True)))

    catcher = os.path.join(runtime.APP_DIR, "scripts", "smtpsink.py")
    start("smtp", [py, catcher, "--port", str(smtp_port), "--folder", mails])
    # The admin app is not installed; web2py still wants a password argument.
    start(
        "web",
        [py, w2p, "--no_gui", "-i", "127.0.0.1", "-p", str(port)] + ["-a", secrets.token_hex(16)],
    )
    base = "http://127.0.0.1:%d/outbox" % port
    wait_for_site(base + "/default/index", procs[-1][1], stopping)
    if stopping:
        return
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


def watch(procs, stopping):
    """Until a stop signal, or one of the processes ends."""
    while not stopping:
        for name, p in procs:
            if p.poll() is not None:
                print("%s exited with %s; stopping" % (name, p.returncode))
                stopping.append(True)
        time.sleep(0.5)


def stop_all(procs):
    """One SIGTERM each: the worker ends its delivery pass, records it and
    exits (a second signal would kill its task); whatever runs after 10 s is
    killed."""
    for _name, p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + 10
    while time.time() < deadline and any(p.poll() is None for _, p in procs):
        time.sleep(0.2)
    for _name, p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


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
    # A stop signal or Ctrl-C while starting stops what started so far
    # (before, SIGTERM then left the catcher and the server running, and
    # Ctrl-C printed a traceback). SIGHUP: the terminal closed.
    procs, stopping = [], []
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.append(True))
    try:
        start_all(args.port, smtp_port, folder, procs, stopping)
        watch(procs, stopping)
    except KeyboardInterrupt:
        pass
    stop_all(procs)
    print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
