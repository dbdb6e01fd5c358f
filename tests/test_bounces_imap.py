"""The bounce mailbox over IMAP when the server breaks the protocol in a way
Dovecot never does: a SELECT answered without the number of messages in the
folder (RFC 3501 requires its EXISTS line). A scripted IMAPS server on
loopback, with a certificate from a throwaway CA (trustme), answers so."""

import socket
import ssl
import threading

import pytest
import trustme

from s3outbox.bounces import mailboxes


class NoCountImap:
    """``with NoCountImap() as s:`` then open ``s.url`` with ``s.context()``:
    every command is answered OK, SELECT without its ``* n EXISTS`` line."""

    def __init__(self):
        self.ca = trustme.CA()
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(self.tls)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.url = "imaps://bounces:secret-pw@127.0.0.1:%d/" % self.listener.getsockname()[1]
        self.commands = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join(10)
        self.listener.close()

    def context(self):
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def _serve(self):
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        with self.tls.wrap_socket(conn, server_side=True) as tls, tls.makefile("rwb") as f:
            f.write(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
            f.flush()
            for line in f:
                tag, command = line.split()[:2]
                command = command.decode().upper()
                self.commands.append(command)
                if command == "CAPABILITY":
                    f.write(b"* CAPABILITY IMAP4rev1\r\n")
                elif command == "SELECT":
                    f.write(b"* FLAGS (\\Seen \\Deleted)\r\n* OK [UIDVALIDITY 7] UIDs valid\r\n")
                elif command == "LOGOUT":
                    f.write(b"* BYE logging out\r\n")
                f.write(tag + b" OK done\r\n")
                f.flush()
                if command == "LOGOUT":
                    return


def test_a_folder_selected_without_its_count_is_refused_with_a_sentence():
    """Before, int(None) raised TypeError out of open_mailbox: the reader
    caught only MailboxError and ValueError, the connection was left open and
    the pass failed with a traceback."""
    with NoCountImap() as server:
        with pytest.raises(mailboxes.MailboxError) as refused:
            mailboxes.open_mailbox(server.url, 10, server.context())
    assert "did not say how many messages" in str(refused.value)
    assert "secret-pw" not in str(refused.value)
    assert server.commands[-1] == "LOGOUT"  # the session was ended, not left open
