"""A return path per message (VERP): with ``bounce_address`` set, each
message's envelope sender is ``local+TOKEN@domain``, where TOKEN is the
outbox row id and a keyed MAC over that id and the row's Message-ID.

Delivery status notifications go to the envelope sender, so a report names
its message by the address it was sent to; nobody without the key can make a
TOKEN that names another message. The key is made once (random, 256 bits)
and kept in the outbox's state table, so every worker on every host uses the
same one; it is never shown or logged. The From header stays the sender.
"""

import hashlib
import hmac
import re
import secrets

from .message import ADDRESS_RE, bare
from .pydal_internals import uri_hash
from .store import OutboxStore, utcnow

KEY_STATE = "bounce_key"
MAC_LENGTH = 20  # hex digits: 80 bits
MAX_LOCAL = 64  # RFC 5321's limit on a local part
_keys: dict[tuple[str, str], bytes] = {}  # (database, table) -> key bytes, read once a process


def usable(address: object) -> str | None:
    """The bare bounce address if it can carry a TOKEN, else None."""
    address = bare(address or "")
    if not ADDRESS_RE.match(address):
        return None
    local = address.rpartition("@")[0]
    return address if len(local) + 1 + 11 + MAC_LENGTH <= MAX_LOCAL else None


def key(store: OutboxStore) -> bytes:
    """The site's bounce key (bytes), made on first use; one for all workers:
    the first to insert it wins, the others read it."""
    where = (uri_hash(store.db), store.tablename)
    found = _keys.get(where)
    if found is None:
        doc = store.get_state(KEY_STATE)
        if not doc:
            store.take_turn(KEY_STATE, None, secrets.token_hex(32), utcnow())
            doc = store.get_state(KEY_STATE)
        found = _keys[where] = bytes.fromhex(doc)
    return found


def token(secret: bytes, row_id: int, message_id: str) -> str:
    """TOKEN for outbox row ``row_id`` whose Message-ID is ``message_id``."""
    return "%d-%s" % (row_id, _mac(secret, row_id, message_id))


def _mac(secret: bytes, row_id: int, message_id: str) -> str:
    text = ("%d %s" % (row_id, message_id)).encode("utf-8")
    return hmac.new(secret, text, hashlib.sha256).hexdigest()[:MAC_LENGTH]


def verify(secret: bytes, row_id: int, message_id: str, mac: str) -> bool:
    """Whether ``mac`` (from a TOKEN) is the one for this row."""
    return hmac.compare_digest(_mac(secret, row_id, message_id), mac.lower())


def envelope(bounce_address: str, tok: str) -> str:
    """The envelope sender ``local+TOKEN@domain``."""
    local, _, domain = bounce_address.rpartition("@")
    return "%s+%s@%s" % (local, tok, domain)


def token_pattern(bounce_address: str) -> re.Pattern[str]:
    """A regex finding (row id, mac) in text that holds the bounce address
    with a TOKEN, ignoring case (some servers lower an address's case)."""
    local, _, domain = bounce_address.rpartition("@")
    return re.compile(
        r"(?<![\w.+-])%s\+(\d{1,11})-([0-9a-f]{%d})@%s(?!\.?[\w-])"
        % (re.escape(local), MAC_LENGTH, re.escape(domain)),
        re.I,
    )
