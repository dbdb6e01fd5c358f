"""Issue 20: the body check that runs before web2py parses a form, on real
gluon Request objects, and the dashboard's parameters (``_next``, files)."""

import io

import pytest
from gluon.globals import Request
from gluon.http import HTTP

from s3outbox.accounts.requestcheck import MAX_FIELDS, check_body
from s3outbox.admin.params import BadParameter, local_next, one_text, whole_number

BOUNDARY = "b0undary"


def request(body, kind="application/x-www-form-urlencoded", method="POST", length=None):
    """A gluon Request as web2py builds it (lower-case keys in env)."""
    env = {
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": kind,
        "CONTENT_LENGTH": str(len(body) if length is None else length),
        "wsgi.input": io.BytesIO(body),
    }
    env.update({k.lower(): v for k, v in env.items()})
    return Request(env)


def urlencoded(n):
    return "&".join("f%d=v" % i for i in range(n)).encode()


def part(name, value=b"v", filename=None):
    disposition = 'form-data; name="%s"' % name
    if filename:
        disposition += '; filename="%s"' % filename
    return b"--%s\r\nContent-Disposition: %s\r\n\r\n%s\r\n" % (
        BOUNDARY.encode(),
        disposition.encode(),
        value,
    )


def multipart(parts):
    return request(
        b"".join(parts) + b"--%s--\r\n" % BOUNDARY.encode(),
        "multipart/form-data; boundary=%s" % BOUNDARY,
    )


def refused(req, **kwargs):
    with pytest.raises(HTTP) as e:
        check_body(req, **kwargs)
    assert req._post_vars is None or e.value.status == 400  # 413: never parsed
    return e.value.status, str(e.value.body)


@pytest.mark.parametrize("n", [MAX_FIELDS + 1, 20000, 100000])
def test_too_many_fields_are_refused_before_parsing(n):
    assert refused(request(urlencoded(n)))[0] == 413
    parts = [part("f%d" % i) for i in range(n)]
    status, text = refused(multipart(parts), max_body=None)
    assert status == 413 and "form fields" in text


def test_a_real_form_passes_and_is_parsed():
    req = request(urlencoded(MAX_FIELDS - 1))
    check_body(req)
    assert req.post_vars.f0 == "v" and len(req.post_vars) == MAX_FIELDS - 1
    req = multipart([part("f%d" % i) for i in range(MAX_FIELDS - 2)])
    check_body(req)
    assert len(req.post_vars) == MAX_FIELDS - 2


def test_a_separator_cut_by_the_read_chunk_is_counted(monkeypatch):
    from s3outbox.accounts import requestcheck

    monkeypatch.setattr(requestcheck, "_CHUNK", 7)
    assert refused(multipart([part("f%d" % i) for i in range(50)]), max_fields=50)[0] == 413
    check_body(multipart([part("f%d" % i) for i in range(40)]), max_fields=50)


def test_too_large_a_body_is_refused_unread():
    req = request(b"", length=2**20 + 1)
    status, text = refused(req)
    assert status == 413 and "at most 1048576" in text
    assert refused(request(b"x=1", length="12x"))[0] == 400
    check_body(request(b"x" * 2**20))  # one field, at the limit


def test_other_bodies_are_not_counted():
    check_body(request(urlencoded(5000), kind="application/json"))
    check_body(request(urlencoded(5000), method="GET"))


def test_a_file_in_a_text_field_is_a_400():
    files = multipart([part("password", b"secret", filename="p.txt"), part("x")])
    status, text = refused(files)
    assert status == 400 and "password was sent as a file" in text
    # Where uploads are taken (Eden), only the account and dashboard fields.
    check_body(multipart([part("image", b"\x89PNG", filename="a.png")]), uploads=True)
    assert refused(multipart([part("_next", b"/x", filename="n")]), uploads=True)[0] == 400
    # An upload field left empty by the browser comes as text.
    check_body(multipart([part("image", b"", filename="")]))


def test_dashboard_parameters_refuse_a_file():
    upload = multipart([part("status", b"failed", filename="s")]).post_vars.status
    with pytest.raises(BadParameter, match="status must be text, not a file"):
        one_text(upload, "status")
    with pytest.raises(BadParameter, match="days must be text"):
        whole_number(upload, "days")
    assert one_text("failed", "status") == "failed" and whole_number("7", "d") == 7


@pytest.mark.parametrize(
    "value, expected",
    [
        ("/outbox/outbox/messages?status=failed", "/outbox/outbox/messages?status=failed"),
        ("/outbox/outbox/./message/5", "/outbox/outbox/message/5"),
        ("/outbox/outbox/../../evil", "/outbox/outbox/index"),
        ("/outbox/outbox/%2e%2e/%2E%2E/evil", "/outbox/outbox/index"),
        ("/outbox/outbox/..%2f..%2fevil", "/outbox/outbox/index"),
        ("/outbox/outbox\\..\\..\\evil", "/outbox/outbox/index"),
        ("//evil.example/outbox/outbox/", "/outbox/outbox/index"),
        ("http://evil.example/outbox/outbox/", "/outbox/outbox/index"),
        ("/outbox/outboxevil", "/outbox/outbox/index"),
        (None, "/outbox/outbox/index"),
    ],
)
def test_next_stays_in_the_dashboard_after_normalising(value, expected):
    assert local_next(value, "/outbox/outbox/", "/outbox/outbox/index") == expected
