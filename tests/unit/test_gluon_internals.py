"""accounts/gluon_internals.py on the pinned web2py-gluon: each private name
the account flows read still exists and means what they assume."""

import pytest
from gluon import current
from gluon.globals import Request, Response, Session
from gluon.http import HTTP
from gluon.tools import Auth
from pydal import DAL

from s3outbox.accounts import gluon_internals as internals


@pytest.fixture
def auth():
    """An Auth on an empty database, in a request for ``?key=...``."""
    request = Request({"query_string": "key=1700000000-abc", "request_method": "GET"})
    request.application, request.controller, request.function = "app", "default", "user"
    before = dict(vars(current))
    current.request, current.response, current.session = request, Response(), Session()
    current.T = lambda text, *args, **kwargs: text
    auth = Auth(DAL("sqlite:memory"), controller="default", function="user")
    auth.define_tables(migrate=False)
    yield auth
    vars(current).clear()
    vars(current).update(before)


def test_reset_password_key_is_where_auth_moves_the_links_key(auth):
    assert internals.reset_password_key(current.session) is None
    with pytest.raises(HTTP) as redirected:
        auth.reset_password()
    assert redirected.value.status == 303
    assert internals.reset_password_key(current.session) == "1700000000-abc"
