"""``./dev run`` (scripts/devserver.py) on a machine where one of its ports is
taken, as on a machine shared with another developer's ``./dev run``."""

import os
import socket
import subprocess
import sys

import pytest
import runtime
from helpers import free_port

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
