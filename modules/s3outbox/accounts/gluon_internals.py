"""What the account flows read of web2py (gluon) that it does not make public,
one function each. tests/unit/test_gluon_internals.py checks each on the
pinned web2py-gluon, so a version that changes one fails there.
"""

from ..delivery.settings import Storage


def reset_password_key(session: Storage) -> str | None:
    """The key of a password-reset link being followed, or None. Auth's
    reset_password (with prevent_password_reset_attacks, the default) moves
    it from the link into the session and redirects, so the next request
    has it only there."""
    return session._reset_password_key
