"""Register in a real web2py server; a real scheduler worker sends the mail."""

import email
import email.policy
import re

import requests
from helpers import wait_for
from webapp import WebApp


def test_registration_mail_goes_out(tmp_path, sink, e2e_db_uri):
    with WebApp(tmp_path / "rt", smtp=sink.server, db_uri=e2e_db_uri) as app:
        s = requests.Session()
        r = app.submit(
            s,
            "/default/user/register",
            dict(
                first_name="Ann",
                last_name="Lee",
                email="ann@people.net",
                password="Secret123x",
                password_two="Secret123x",
            ),
        )
        assert r.status_code == 200 and "/default/index" in r.url
        assert wait_for(lambda: sink.count, timeout=90), app.log("worker")
        mail_from, rcpts, data = sink.messages[0]
        assert rcpts == ["ann@people.net"]
        body = email.message_from_bytes(data, policy=email.policy.default)
        text = body.get_body(("plain",)).get_content()
        link = re.search(r"(http://\S+/verify_email/[\w-]+)", text).group(1)
        assert s.get(link).ok
        assert not app.errors()
