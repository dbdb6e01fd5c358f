# -*- coding: utf-8 -*-
"""Helpers shared by the tests (one copy each): ports, attachments, waiting,
and settings for the transport and pool unit tests."""

import html
import io
import re
import socket
import time

from gluon.storage import Storage


def free_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def attachment(name, payload):
    """A Mail.Attachment of ``payload`` bytes (2.26 cannot take bytes itself)."""
    from gluon.tools import Mail
    return Mail.Attachment(io.BytesIO(payload), filename=name)


def wait_for(predicate, timeout=60, step=0.2):
    """The first true value of ``predicate()`` within ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


FLASH_RE = re.compile(r'<div class="flash" role="status">(.*?)</div>', re.S)


def flash(response):
    """The flash message shown on a page, as text (None without one)."""
    m = FLASH_RE.search(response.text)
    return m and re.sub(r"\s+", " ", html.unescape(m.group(1))).strip()


def settings(**changes):
    """Mail.settings as MailS3 has them, with working values and ``changes``."""
    from s3outbox.settings import DEFAULTS
    values = dict(DEFAULTS, server="127.0.0.1:8025", sender="Outbox <outbox@outbox.net>",
                  login=None, tls=False, ssl=False, hostname=None, dkim=None,
                  cipher_type=None, list_unsubscribe=None)
    values.update(changes)
    return Storage(values)


def snapshot(**changes):
    """A settings Snapshot (see ``settings``)."""
    from s3outbox.settings import Snapshot
    return Snapshot(settings(**changes))
