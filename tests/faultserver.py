# -*- coding: utf-8 -*-
"""A plain-socket SMTP server that misbehaves on cue, for faults that aiosmtpd
will not commit: dropping the connection after a given command or in the
middle of DATA, never answering, a 421 greeting, refusing AUTH.

``script`` maps a stage to what the server does there:
``"greeting"``, ``"EHLO"``, ``"AUTH"``, ``"MAIL"``, ``"RCPT"`` (a str, or a dict
by address), ``"DATA"`` (the reply to the DATA command), ``"BODY"`` (DROP only:
close after the first line of content) and ``"END"`` (the reply once the
message is complete). A value is a reply (lines joined by CRLF), ``DROP``
(close without a word) or ``STALL`` (never answer). Without a rule the server
answers like a plain, well-behaved relay and keeps the message.
"""

import socket
import threading

DROP, STALL = "drop", "stall"


class FaultServer(object):
    """``with FaultServer(script, extensions) as s:`` then point mail at ``s.server``."""

    def __init__(self, script=None, extensions=("8BITMIME",)):
        self.script = dict(script or {})
        self.extensions = list(extensions)
        self.messages = []      # (mail_from, [rcpt], data) fully accepted
        self.commands = []      # every command line received, decoded
        self.connections = 0
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
            except socket.timeout:
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

    def _act(self, conn, stage, default, key=None):
        """Do what the script says at ``stage``; False when the session ended."""
        rule = self.script.get(stage, default)
        if isinstance(rule, dict):
            rule = rule.get(key, default)
        if rule == DROP:
            self._close(conn)
            return False
        if rule == STALL:
            conn.settimeout(0.1)
            while not self._stop.is_set():
                try:
                    if not conn.recv(4096):
                        break  # the client gave up
                except socket.timeout:
                    continue
                except OSError:
                    break
            self._close(conn)
            return False
        conn.sendall(rule.encode("utf-8") + b"\r\n")
        return True

    # --------------------------------------------------------------- session
    def _serve(self, conn):
        try:
            self._session(conn, conn.makefile("rb"))
        except OSError:
            pass
        finally:
            self._close(conn)

    def _session(self, conn, reader):
        if not self._act(conn, "greeting", "220 faultserver ESMTP ready"):
            return
        mail_from, rcpts = None, []
        while True:
            line = reader.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self.commands.append(text)
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                lines = ["250-faultserver"] + ["250-%s" % e for e in self.extensions]
                lines[-1] = "250 " + lines[-1][4:]
                ok = self._act(conn, "EHLO", "\r\n".join(lines))
            elif verb == "HELO":
                ok = self._act(conn, "EHLO", "250 faultserver")
            elif verb == "AUTH":
                ok = self._act(conn, "AUTH", "235 2.7.0 authenticated")
            elif verb == "MAIL":
                mail_from, rcpts = _address(arg), []
                ok = self._act(conn, "MAIL", "250 2.1.0 ok")
            elif verb == "RCPT":
                address = _address(arg)
                rule = self.script.get("RCPT")
                refused = isinstance(rule, dict) and address in rule or \
                    isinstance(rule, str)
                if not refused:
                    rcpts.append(address)
                ok = self._act(conn, "RCPT", "250 2.1.5 ok", address)
            elif verb == "DATA":
                ok = self._act(conn, "DATA", "354 end with <CRLF>.<CRLF>") and \
                    self._data(conn, reader, mail_from, rcpts)
            elif verb in ("RSET", "NOOP"):
                ok = self._act(conn, verb, "250 2.0.0 ok")
            elif verb == "QUIT":
                conn.sendall(b"221 2.0.0 bye\r\n")
                return
            else:
                ok = self._act(conn, verb, "502 5.5.2 not implemented")
            if not ok:
                return

    def _data(self, conn, reader, mail_from, rcpts):
        chunks = []
        while True:
            line = reader.readline()
            if not line:
                return False
            if self.script.get("BODY") == DROP:
                self._close(conn)
                return False
            if line in (b".\r\n", b".\n"):
                break
            chunks.append(line[1:] if line.startswith(b"..") else line)
        rule = self.script.get("END", "250 2.0.0 queued")
        if isinstance(rule, str) and rule.startswith("250"):
            self.messages.append((mail_from, list(rcpts), b"".join(chunks)))
        return self._act(conn, "END", "250 2.0.0 queued")


def _address(arg):
    """'FROM:<a@b> SIZE=1' -> 'a@b'."""
    start, end = arg.find("<"), arg.find(">")
    return arg[start + 1:end] if start >= 0 and end > start else arg.partition(":")[2]
