"""Approval on an Auth that has no mailer: the approvers cannot be told, and
the registration goes on (found by mypy: the mail raised AttributeError, and
web2py undid the registration)."""

import logging

import pytest
from gluon import current
from gluon.globals import Request, Response, Session
from gluon.languages import TranslatorFactory
from pydal import DAL

from s3outbox.accounts.auth import OutboxAuth


@pytest.fixture
def auth(tmp_path, monkeypatch):
    request = Request({})
    request.application, request.controller, request.function = "outbox", "default", "user"
    request.folder = str(tmp_path)
    (tmp_path / "languages").mkdir()
    for name, value in dict(
        request=request,
        response=Response(),
        session=Session(),
        T=TranslatorFactory(str(tmp_path / "languages"), "en"),
    ).items():
        monkeypatch.setattr(current, name, value, raising=False)
    db = DAL("sqlite:memory")
    auth = OutboxAuth(db, host_names=["localhost"])
    auth.define_tables()
    auth.settings.mailer = None
    auth.configure_outbox({"auth.approver": "boss@approvers.net"}.get)
    yield auth
    db.close()


def test_without_a_mailer_approvers_are_not_told_and_nothing_raises(auth, caplog):
    users = auth.table_user()
    user = users(
        users.insert(first_name="Ann", email="ann@people.net", registration_key="pending")
    )
    with caplog.at_level(logging.ERROR, logger="s3outbox"):
        assert auth.notify_approvers(user) == 0
        auth.notify_approved(user)
    assert "Auth has no mailer" in caplog.records[0].getMessage()
    assert "Auth has no mailer" in caplog.records[1].getMessage()
