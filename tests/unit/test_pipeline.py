"""pipeline writes addresses (quoteaddr) and content (_dot_stuffed) exactly
as smtplib does."""

import smtplib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3outbox.transport import pipeline
from s3outbox.transport.pipeline import quoteaddr

ADDRESSES = [
    "ann@people.net",
    "a.b-c+tag@mail.example.org",
    "o'brien@people.net",
    "x_y=z!#$%&*/?^`{|}~@a-b.c",
    "a..b@people.net",
    ".a@people.net",
    "a.@people.net",
    "ann@people..net",
    "ann@-people.net",
    "Ann <ann@people.net>",
    "<ann@people.net>",
    '"ann smith"@people.net',
    "ann@[127.0.0.1]",
    "ann",
    "",
    "ann@people.net (Ann)",
    "ann@people.net, bob@people.net",
    "caf\u00e9@people.net",
    "ann@caf\u00e9.net",
    "ann @people.net",
    "ann@people.net.",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_quoteaddr_is_smtplibs(address):
    assert quoteaddr(address) == smtplib.quoteaddr(address)


@given(
    st.lists(st.sampled_from([b".", b"..", b"a", b"\r\n", b"\n", b"\r", b" ."]), max_size=12).map(
        b"".join
    )
)
def test_content_is_dot_stuffed_as_smtplib_sends_it(data):
    """Every line that starts with a dot gets a second one (RFC 5321 4.5.2),
    whichever way the content starts or its lines end; then CRLF.CRLF."""
    expected = smtplib._quote_periods(data)
    if not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert pipeline._dot_stuffed(data) == expected + b".\r\n"
