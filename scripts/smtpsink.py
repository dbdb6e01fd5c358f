"""A local SMTP server on loopback (aiosmtpd) that keeps what it accepts.

Used three ways: as the mail catcher of ``./dev run`` (it prints each mail and
its links), by the tests (with scripted replies for faults), and by the
benchmark (counting, with an optional delay before every reply to play a
relay that is far away).

Scripted replies: ``sink.script["RCPT"] = {"bad@x.org": "550 5.1.1 no such user"}``
refuses one recipient; ``sink.script["DATA"] = "451 4.3.0 try later"`` defers
every message; ``sink.script["MAIL"]`` likewise for the sender.

``sink.extensions`` are added to the EHLO reply: ``["PIPELINING"]`` makes it a
pipelining server, as Postfix is (aiosmtpd reads commands from a buffer, so it
takes pipelined input; it does not implement CHUNKING). ``sink.round_trips``
counts the times a client made it wait after a reply.
"""

import argparse
import asyncio
import email
import email.policy
import os
import re
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPProtocol


class Sink:
    """aiosmtpd handler: records envelopes; replies as scripted."""

    def __init__(self, delay=0.0, keep=True, on_message=None, extensions=()):
        self.delay = delay
        self.extensions = list(extensions)
        self.round_trips = 0
        self.keep = keep
        self.on_message = on_message
        self.messages = []  # (mail_from, rcpt_tos, bytes) when keep
        self.count = 0
        self.message_ids = {}  # Message-ID -> times received
        self.connections = 0
        self.script = {}
        self.lock = threading.Lock()

    def _scripted(self, verb, key=None):
        rule = self.script.get(verb)
        if isinstance(rule, dict):
            return rule.get(key)
        return rule

    async def _wait(self):
        if self.delay:
            await asyncio.sleep(self.delay)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        await self._wait()
        session.host_name = hostname
        return responses[:-1] + ["250-%s" % e for e in self.extensions] + responses[-1:]

    async def handle_MAIL(self, server, session, envelope, address, options):
        await self._wait()
        reply = self._scripted("MAIL", address)
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        await self._wait()
        reply = self._scripted("RCPT", address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        await self._wait()
        reply = self._scripted("DATA")
        if reply:
            return reply
        data = envelope.original_content or envelope.content
        match = re.search(rb"^Message-ID:\s*(\S+)", data, re.M | re.I)
        with self.lock:
            self.count += 1
            if match:
                mid = match.group(1).decode("ascii", "replace")
                self.message_ids[mid] = self.message_ids.get(mid, 0) + 1
            if self.keep:
                self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), data))
        if self.on_message:
            self.on_message(envelope.mail_from, list(envelope.rcpt_tos), data)
        return "250 OK queued"

    def duplicates(self):
        return {mid: n for mid, n in self.message_ids.items() if n > 1}


class _CountingSMTP(SMTPProtocol):
    """Counts connections, and round trips: input that arrives after a reply."""

    _replied = False

    def connection_made(self, transport):
        self.event_handler.connections += 1
        super().connection_made(transport)

    def data_received(self, data):
        if self._replied:
            self._replied = False
            self.event_handler.round_trips += 1
        super().data_received(data)

    async def push(self, status):
        self._replied = True
        await super().push(status)


class SinkController(Controller):
    """Runs a Sink in a thread: ``with SinkController(Sink()) as c: c.port``."""

    def __init__(self, handler, port=0, hostname="127.0.0.1", **kwargs):
        self._reserved = None
        if not port:
            import socket

            # A free port, kept bound (SO_REUSEADDR, not listening) until
            # start() binds it too: released at once, another process could
            # take it first.
            self._reserved = socket.socket()
            self._reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._reserved.bind((hostname, 0))
            port = self._reserved.getsockname()[1]
        super().__init__(handler, hostname=hostname, port=port, ready_timeout=10, **kwargs)

    def factory(self):
        return _CountingSMTP(self.handler, **self.SMTP_kwargs)

    @property
    def server_address(self):
        return "%s:%s" % (self.hostname, self.port)

    def start(self):
        try:
            super().start()
        finally:
            if self._reserved is not None:
                self._reserved.close()
                self._reserved = None
        # Not the start-up check's own connection.
        self.handler.connections = self.handler.round_trips = 0

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def _print_message(folder):
    def show(mail_from, rcpts, data):
        msg = email.message_from_bytes(data, policy=email.policy.default)
        stamp = time.strftime("%H:%M:%S")
        body = msg.get_body(("plain", "html"))
        text = body.get_content() if body is not None else ""
        links = re.findall(r"https?://[^\s\"'<>]+", text)
        print(
            "[smtp %s] %s -> %s: %s" % (stamp, mail_from, ", ".join(rcpts), msg["Subject"]),
            flush=True,
        )
        for link in links[:3]:
            print("           link: %s" % link, flush=True)
        if folder:
            os.makedirs(folder, exist_ok=True)
            name = "%s-%06d.eml" % (
                time.strftime("%Y%m%d-%H%M%S"),
                int(time.time() * 1e6) % 1000000,
            )
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)

    return show


def main(argv=None):
    parser = argparse.ArgumentParser(description="Local SMTP catcher")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--folder", help="save each mail here as .eml")
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds to wait before every reply"
    )
    args = parser.parse_args(argv)
    sink = Sink(delay=args.delay, keep=False, on_message=_print_message(args.folder))
    with SinkController(sink, port=args.port):
        print("SMTP catcher listening on 127.0.0.1:%d" % args.port, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
