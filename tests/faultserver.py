"""A plain-socket SMTP server that misbehaves on cue, for faults that aiosmtpd
will not commit: dropping the connection after a given command or in the
middle of DATA, never answering, a 421 greeting, refusing AUTH.

``script`` maps a stage to what the server does there:
``"greeting"``, ``"EHLO"``, ``"AUTH"``, ``"MAIL"`` and ``"RCPT"`` (a str, or a
dict by address), ``"DATA"`` (the reply to the DATA command), ``"BODY"`` (DROP
only: close after the first line of content) and ``"END"`` (the reply once the
message is complete, after DATA or BDAT ... LAST; a str, or a dict by the
first recipient). A value is a reply (lines
joined by CRLF), ``DROP`` (close without a word) or ``STALL`` (never answer).
Without a rule the server answers like a plain, well-behaved relay and keeps
the message. Commands out of sequence get what a real server answers (503 to
RCPT without a sender taken, 554 to DATA without a recipient), since a
pipelining client sends them before it knows.

``max_rcpts`` takes that many recipients in a transaction and answers
``452 4.5.3`` to the rest, as servers that limit recipients per message do.

With ``"PIPELINING"`` (and ``"CHUNKING"``) in ``extensions`` it advertises
them; it reads commands from a buffer either way. ``turns`` counts round trips:
the times it had to wait for the client after replying.
"""

import socket
import threading

DROP, STALL = "drop", "stall"


class FaultServer:
    """``with FaultServer(script, extensions) as s:`` then point mail at ``s.server``."""

    def __init__(self, script=None, extensions=("8BITMIME",), max_rcpts=None):
        self.script = dict(script or {})
        self.max_rcpts = max_rcpts
        self.extensions = list(extensions)
        self.messages = []  # (mail_from, [rcpt], data) fully accepted
        self.commands = []  # every command line received, decoded
        self.connections = 0
        self.turns = 0
        self._stop = threading.Event()
        self._clients = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.server = "127.0.0.1:%d" % self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._listener.close()
        for conn in list(self._clients):
            self._close(conn)

    # -------------------------------------------------------------- plumbing
    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            self._clients.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _close(conn):
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()

    def _act(self, session, stage, default, key=None):
        """Do what the script says at ``stage``; False when the session ended."""
        rule = self.script.get(stage, default)
        if isinstance(rule, dict):
            rule = rule.get(key, default)
        if rule == DROP:
            self._close(session.conn)
            return False
        if rule == STALL:
            self._stall(session.conn)
            return False
        session.reply(rule)
        return True

    def _stall(self, conn):
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                if not conn.recv(4096):
                    break  # the client gave up
            except TimeoutError:
                continue
            except OSError:
                break
        self._close(conn)

    # --------------------------------------------------------------- session
    def _serve(self, conn):
        try:
            self._session(_Session(self, conn))
        except OSError:
            pass
        finally:
            self._close(conn)

    def _session(self, session):
        if not self._act(session, "greeting", "220 faultserver ESMTP ready"):
            return
        while True:
            line = session.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self.commands.append(text)
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            if verb == "QUIT":
                session.reply("221 2.0.0 bye")
                return
            handler = getattr(self, "_on_" + verb, None)
            if handler is None:
                ok = self._act(session, verb, "502 5.5.2 not implemented")
            else:
                ok = handler(session, arg)
            if not ok:
                return

    def _on_EHLO(self, session, arg):
        lines = ["250-faultserver"] + ["250-%s" % e for e in self.extensions]
        lines[-1] = "250 " + lines[-1][4:]
        return self._act(session, "EHLO", "\r\n".join(lines))

    def _on_HELO(self, session, arg):
        return self._act(session, "EHLO", "250 faultserver")

    def _on_AUTH(self, session, arg):
        return self._act(session, "AUTH", "235 2.7.0 authenticated")

    def _on_MAIL(self, session, arg):
        address = _address(arg)
        session.mail_from, session.rcpts = None, []
        if _refused(self.script.get("MAIL"), address):
            return self._act(session, "MAIL", None, address)
        session.mail_from = address
        return self._act(session, "MAIL", "250 2.1.0 ok", address)

    def _on_RCPT(self, session, arg):
        address = _address(arg)
        if session.mail_from is None:
            return self._act(session, "sequence", "503 5.5.1 need MAIL command")
        if self.max_rcpts is not None and len(session.rcpts) >= self.max_rcpts:
            return self._act(session, "sequence", "452 4.5.3 too many recipients")
        if not _refused(self.script.get("RCPT"), address):
            session.rcpts.append(address)
        return self._act(session, "RCPT", "250 2.1.5 ok", address)

    def _on_DATA(self, session, arg):
        if not session.rcpts and "DATA" not in self.script:
            return self._act(session, "sequence", "554 5.5.1 no valid recipients")
        reply = self.script.get("DATA", "354 end with <CRLF>.<CRLF>")
        return self._act(session, "DATA", reply) and (
            not reply.startswith("354") or self._data(session)
        )

    def _on_BDAT(self, session, arg):
        size, _, last = arg.partition(" ")
        chunk = session.read(int(size))
        if chunk is None:
            return False
        if not session.rcpts:
            return self._act(session, "sequence", "554 5.5.1 no valid recipients")
        session.chunks.append(chunk)
        if last.strip().upper() != "LAST":
            return self._act(session, "BDAT", "250 2.0.0 %d octets" % len(chunk))
        return self._end(session, b"".join(session.chunks))

    def _on_RSET(self, session, arg):
        session.mail_from, session.rcpts, session.chunks = None, [], []
        return self._act(session, "RSET", "250 2.0.0 ok")

    def _on_NOOP(self, session, arg):
        return self._act(session, "NOOP", "250 2.0.0 ok")

    def _data(self, session):
        chunks = []
        while True:
            line = session.readline()
            if not line:
                return False
            if self.script.get("BODY") == DROP:
                self._close(session.conn)
                return False
            if line in (b".\r\n", b".\n"):
                break
            chunks.append(line[1:] if line.startswith(b"..") else line)
        return self._end(session, b"".join(chunks))

    def _end(self, session, data):
        """The reply to a complete message; keeps it when that is a 250."""
        default, first = "250 2.0.0 queued", (session.rcpts or [None])[0]
        rule = self.script.get("END", default)
        if isinstance(rule, dict):
            rule = rule.get(first, default)
        if isinstance(rule, str) and rule.startswith("250"):
            self.messages.append((session.mail_from, list(session.rcpts), data))
        session.mail_from, session.rcpts, session.chunks = None, [], []
        return self._act(session, "END", default, first)


class _Session:
    """One client connection: buffered reads that count round trips, and the
    envelope of the message under way."""

    def __init__(self, server, conn):
        self.server, self.conn = server, conn
        self.buffer = b""
        self.replied = False  # a reply went out since the last read
        self.mail_from, self.rcpts, self.chunks = None, [], []

    def reply(self, text):
        self.replied = True
        self.conn.sendall(text.encode("utf-8") + b"\r\n")

    def _fill(self):
        if self.replied:
            self.server.turns += 1
            self.replied = False
        more = self.conn.recv(65536)
        self.buffer += more
        return bool(more)

    def readline(self):
        """A line with its end, or b"" when the client went away."""
        while b"\n" not in self.buffer:
            if not self._fill():
                return b""
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def read(self, size):
        """Exactly ``size`` bytes, or None when the client went away."""
        while len(self.buffer) < size:
            if not self._fill():
                return None
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


def _refused(rule, address):
    """True when the script answers ``address`` with a rule of its own."""
    return isinstance(rule, str) or isinstance(rule, dict) and address in rule


def _address(arg):
    """'FROM:<a@b> SIZE=1' -> 'a@b'."""
    start, end = arg.find("<"), arg.find(">")
    return arg[start + 1 : end] if start >= 0 and end > start else arg.partition(":")[2]
