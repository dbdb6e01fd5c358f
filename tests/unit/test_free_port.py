"""The loopback ports the tests hand to servers stay reserved until those
servers bind them: a port released at once could be taken by another process
first (another test run on the machine, any connect())."""

import errno
import socket

import pytest
from helpers import free_port
from smtpsink import Sink, SinkController


def _taken_by_others(port):
    """Whether a plain bind (as another program makes) finds ``port`` taken."""
    with socket.socket() as other:
        try:
            other.bind(("127.0.0.1", port))
        except OSError as e:
            assert e.errno == errno.EADDRINUSE, e
            return True
        return False


def test_free_port_is_refused_and_reserved():
    port = free_port()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), 5).close()
    assert _taken_by_others(port)
    # The server the test starts binds it as servers do (SO_REUSEADDR).
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        socket.create_connection(("127.0.0.1", port), 5).close()


def test_a_sink_keeps_its_port_until_it_listens():
    controller = SinkController(Sink())
    assert _taken_by_others(controller.port)
    with controller:
        assert _taken_by_others(controller.port)
        socket.create_connection(("127.0.0.1", controller.port), 5).close()
