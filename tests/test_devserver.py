"""``./dev run`` (scripts/devserver.py): a port already taken (as on a
machine shared with another developer's ``./dev run``), and a stop while it
starts. Each test runs the devserver of a copy of the app whose
appconfig.ini points the catcher at a free port, so 8025 is never touched."""

import configparser
import os
import signal
import socket
import subprocess
import sys

import pytest
import runtime
from helpers import free_port, wait_for


class DevRun:
    """``./dev run --port PORT`` of an app copy, its catcher on ``smtp_port``."""

    def __init__(self, tmp_path):
        self.app = runtime.build(str(tmp_path / "src"), copy=True)
        self.rt = tmp_path / "rt"
        self.port, self.smtp_port = free_port(), free_port()
        path = os.path.join(self.app, "private", "appconfig.ini")
        config = configparser.ConfigParser(interpolation=None)
        config.read(path)
        config.set("smtp", "server", "127.0.0.1:%d" % self.smtp_port)
        with open(path, "w") as f:
            config.write(f)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(self.app, "scripts", "devserver.py")]
            + ["--port", str(self.port), "--runtime", str(self.rt)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        return self.proc

    def output(self, timeout=60):
        return self.proc.communicate(timeout=timeout)[0]

    def close(self):
        """Whatever the test left: the devserver stops what it started."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
        if self.proc is not None:
            try:  # its group: what an older devserver left there
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def devrun(tmp_path):
    run = DevRun(tmp_path)
    yield run
    run.close()


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("which", ["catcher", "web"])
def test_a_taken_port_is_named_before_anything_starts(devrun, which):
    port = devrun.smtp_port if which == "catcher" else devrun.port
    with socket.socket() as listener:
        # SO_REUSEADDR as servers set it (free_port() keeps the port bound)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        devrun.start()
        out = devrun.output()
    assert devrun.proc.returncode == 2, out
    assert "Traceback" not in out
    assert "127.0.0.1:%d" % port in out and "in use" in out, out
    assert ("[smtp] server" if which == "catcher" else "--port") in out, out
    assert not devrun.rt.exists()  # nothing built, nothing started


@pytest.mark.parametrize("way", ["SIGTERM", "Ctrl-C"])
def test_a_stop_while_starting_stops_what_started(devrun, way):
    """SIGTERM (to ./dev run alone) or Ctrl-C (SIGINT to its group) while
    the server starts: before, SIGTERM ended ./dev run at once and left the
    catcher and the server running, and Ctrl-C printed a traceback."""
    proc = devrun.start()
    assert wait_for(lambda: listening(devrun.smtp_port) or proc.poll() is not None, timeout=60)
    if way == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    out = devrun.output()
    assert proc.returncode == 0 and "stopped" in out, out
    assert "Traceback" not in out, out
    assert not wait_for(lambda: listening(devrun.smtp_port) or listening(devrun.port), timeout=5)
