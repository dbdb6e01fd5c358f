"""``./dev run`` (scripts/devserver.py) on a machine where one of its ports is
taken, as on a machine shared with another developer's ``./dev run``."""

import configparser
import os
import signal
import socket
import subprocess
import sys

import pytest
import runtime
from helpers import free_port, wait_for

DEVSERVER = os.path.join(runtime.APP_DIR, "scripts", "devserver.py")
sys.path.insert(0, os.path.dirname(DEVSERVER))
import devserver  # noqa: E402


def hold(port):
    """A listener on 127.0.0.1:``port``, or None when another program has
    it already (then it is taken, as the test wants)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    s.listen()
    return s


@pytest.mark.parametrize("which", ["catcher", "web"])
def test_a_taken_port_is_named_before_anything_starts(tmp_path, which):
    web_port = free_port()
    port = devserver.catcher_port() if which == "catcher" else web_port
    listener = hold(port)
    try:
        done = subprocess.run(
            [
                sys.executable,
                DEVSERVER,
                "--port",
                str(web_port),
                "--runtime",
                str(tmp_path / "rt"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        if listener is not None:
            listener.close()
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "Traceback" not in out
    assert "127.0.0.1:%d" % port in out and "in use" in out, out
    assert ("[smtp] server" if which == "catcher" else "--port") in out, out
    assert not (tmp_path / "rt").exists()  # nothing built, nothing started


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("way", ["SIGTERM", "Ctrl-C"])
def test_a_stop_while_starting_stops_what_started(tmp_path, way):
    """SIGTERM (to ./dev run alone) or Ctrl-C (SIGINT to its group) while
    the server starts: before, SIGTERM ended ./dev run at once and left the
    catcher and the server running, and Ctrl-C printed a traceback."""
    app = runtime.build(str(tmp_path / "src"), copy=True)  # with its own appconfig.ini
    web_port, smtp_port = free_port(), free_port()
    config = configparser.ConfigParser(interpolation=None)
    config.read(os.path.join(app, "private", "appconfig.ini"))
    config.set("smtp", "server", "127.0.0.1:%d" % smtp_port)
    with open(os.path.join(app, "private", "appconfig.ini"), "w") as f:
        config.write(f)
    cmd = [sys.executable, os.path.join(app, "scripts", "devserver.py"), "--port", str(web_port)]
    proc = subprocess.Popen(
        cmd + ["--runtime", str(tmp_path / "rt")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert wait_for(lambda: listening(smtp_port) or proc.poll() is not None, timeout=60)
        if way == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "stopped" in out, out
        assert "Traceback" not in out, out
        assert not wait_for(lambda: listening(smtp_port) or listening(web_port), timeout=5)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group: nothing left behind
        except ProcessLookupError:
            pass
