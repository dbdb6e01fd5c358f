"""wire.message_bytes() writes the bytes of message.wire(message.build(...)).

For generated messages (any stored Message of the common shapes, including
values normalize() would refuse, which a stored row may still hold) both
give the same bytes, or both raise the same error. The multipart boundary
is drawn from ``random`` by both, so each side starts from the same seed.
"""

import datetime
import email.utils
import logging
import random
import sys
from email.mime.text import MIMEText
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from s3outbox.delivery import message as mime
from s3outbox.delivery import wire
from s3outbox.delivery.message import Message, normalize
from s3outbox.delivery.wire import message_bytes

UTC = datetime.UTC
DATE = datetime.datetime(2026, 11, 29, 11, 42, 8, tzinfo=UTC)
SENDER = "Outbox <outbox@people.net>"


def outcome(make, seed):
    """The bytes ``make()`` gives, or the error it raises, from ``seed``."""
    random.seed(seed)
    try:
        return make()
    except Exception as e:
        return repr(e)


def same(msg, sender=SENDER, message_id="<1.ab@people.net>", date=DATE, dkim=None, seed=0):
    expected = outcome(lambda: mime.wire(mime.build(msg, sender, message_id, date, dkim)), seed)
    assert outcome(lambda: message_bytes(msg, sender, message_id, date, dkim), seed) == expected
    return expected


# ------------------------------------------------------------- strategies
# Pieces that quoted-printable and header folding treat specially.
SPECIAL = [
    " ",
    "\t",
    "=",
    "==",
    "\r",
    "\n",
    "\r\n",
    "\n\n",
    " \n",
    "\t\r\n",
    "=\n",
    "caf\u00e9",
    "\u20ac",
    "\U0001f600",
    "\u00a0",
    ".",
    "From ",
    "--",
    "=?utf-8?q?x?=",
    "a" * 75,
    "b" * 76,
    "c" * 77,
    "d " * 50,
    "\x00",
    "\x0c",
]
body = st.one_of(
    st.lists(st.one_of(st.text(max_size=20), st.sampled_from(SPECIAL)), max_size=30).map("".join),
    st.sampled_from([None, ""]),
)
# One-line text: no character that splitlines() breaks at.
_line_char = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"))
line = st.lists(
    st.one_of(
        st.text(_line_char, max_size=15),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
        st.sampled_from(
            ["Gr\u00fc\u00dfe", "x" * 90, "", "  ", "\t", "=?utf-8?q?x?=", "a,b", '"q"', "<x>"]
        ),
    ),
    max_size=10,
).map(" ".join)
_local = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,8}", fullmatch=True)
_domain = st.sampled_from(
    ["people.net", "b\u00fccher.de", "mail.example.org", "xn--bcher-kva.de", "пример.рф"]
)
_name = st.text(st.sampled_from("abcXYZ \u00e9\u00fc\u0416\u6f22.,'-\"\\()"), max_size=40)


def _address(local, domain, name, quoted):
    addr = "%s@%s" % (local, domain)
    if not name:
        return addr
    return '"%s" <%s>' % (name, addr) if quoted else "%s <%s>" % (name, addr)


address = st.one_of(
    st.builds(_address, _local, _domain, _name, st.booleans()), line
)  # stored text that is no address: the Header fallback
addresses = st.lists(address, max_size=3).map(tuple)
header_names = st.sampled_from(
    [
        "X-Mailer",
        "List-Unsubscribe",
        "X-A",
        "x-a",
        "X-Very-Long-Header-Name-" + "N" * 60,
        "Precedence",
    ]
)
zones = st.sampled_from(
    [
        UTC,
        datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
        datetime.timezone(-datetime.timedelta(hours=8)),
        None,
    ]
)
dates = st.builds(
    lambda d, tz: d.replace(tzinfo=tz),
    st.datetimes(datetime.datetime(1970, 1, 2), datetime.datetime(9999, 1, 1)),
    zones,
)
messages = st.builds(
    Message,
    to=addresses,
    cc=addresses,
    bcc=addresses,
    reply_to=addresses,
    sender=st.none(),
    from_address=st.one_of(st.none(), address),
    subject=line,
    text=body,
    html=body,
    headers=st.dictionaries(header_names, line, max_size=3),
    raw=st.just(False),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    messages,
    st.one_of(st.just(SENDER), address),
    st.sampled_from(["<1.ab@people.net>", "<%s@people.net>" % ("m" * 90)]),
    dates,
    st.integers(0, 2**32),
)
@example(
    normalize(
        to="ann@people.net",
        subject="Benchmark message 1",
        message="your account request was received\n" * 30,
    ),
    SENDER,
    "<1.ab@people.net>",
    DATE,
    0,
)
@example(
    normalize(
        to=["Zo\u00eb \u00dcnal <zoe@b\u00fccher.de>", "b@people.net"],
        cc="Cy <cy@people.net>",
        reply_to="r@people.net",
        subject="Gr\u00fc\u00dfe " * 20,
        headers={"X-A": "\u00fc " * 40},
        message=("caf\u00e9 = 100%  \r\n" * 5 + "x" * 200, "<p>caf\u00e9</p>\r\r\n"),
    ),
    SENDER,
    "<1.ab@people.net>",
    DATE,
    7,
)
def test_writer_gives_the_email_packages_bytes(msg, sender, message_id, date, seed):
    same(msg, sender, message_id, date, seed=seed)


@pytest.mark.parametrize("length", range(64, 72))
def test_plain_headers_around_the_folding_width(length):
    """'Subject: ' + 69 characters is the longest line written as it is."""
    for subject in ("s" * length, ("word " * 20)[: length - 1] + "x"):
        same(
            normalize(
                to="ann@people.net",
                subject=subject,
                message="hi",
                headers={"X-Long-Name": subject},
            )
        )


@given(dates)
def test_cached_date_header_is_format_datetime(date):
    """The Date header cache keys on the zone too: equal instants in two
    zones are written differently."""
    assert mime._date(date) == email.utils.format_datetime(date)
    if date.tzinfo is not None:
        other = date.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
        assert mime._date(other) == email.utils.format_datetime(other)


# ------------------------------------------------- shapes the package writes
PLAIN = normalize(to="Ann <ann@people.net>", subject="Hi", message="hello")


def test_attachments_go_to_the_email_package():
    part = dict(
        kind="part",
        filename=None,
        content_type="text/plain",
        content_id=None,
        payload=MIMEText("attached").as_bytes(),
    )
    data = same(Message(**dict(vars(PLAIN), attachments=(part,))), seed=3)
    assert b"multipart/mixed" in data and b"attached" in data


def test_raw_goes_to_the_email_package():
    msg = normalize(to="ann@people.net", message="raw \u00e9 text\n", raw=True)
    assert b"raw" in same(msg)


def test_dkim_goes_to_the_email_package():
    dkim = mock.Mock(key="k", selector="s")
    with mock.patch("gluon.tools.dkim_sign", return_value="v=1; a=rsa-sha256; b=x"):
        data = same(PLAIN, dkim=dkim)
    assert b"\r\nDKIM-Signature: v=1; a=rsa-sha256; b=x\r\n" in data


@pytest.mark.parametrize(
    "changes",
    [
        dict(text=None, html=None),  # no body: build() fails
        dict(text=None, html=""),
        dict(text="lone \udc80 surrogate"),  # not UTF-8
        dict(html="<p>\udc80</p>", text="x"),
        dict(subject=7),
        dict(text=b"bytes"),
        dict(headers={"X-A": None}),
        dict(to=(None,)),
        dict(headers={"X-\udc80": "v"}),
    ],
)
def test_what_a_stored_row_should_not_hold_fails_as_in_the_email_package(changes):
    same(Message(**dict(vars(PLAIN), **changes)))


def test_the_boundary_is_the_generators():
    """Same form as email.generator draws it, and a new one each message."""
    msg = normalize(to="ann@people.net", message=("text", "<p>html</p>"))
    first = message_bytes(msg, SENDER, "<1@people.net>", DATE)
    second = message_bytes(msg, SENDER, "<1@people.net>", DATE)
    boundary = email.message_from_bytes(first).get_boundary()
    assert (
        boundary.startswith("=" * 15)
        and boundary.endswith("==")
        and len(boundary) == 15 + len(repr(sys.maxsize - 1)) + 2
    )
    assert email.message_from_bytes(second).get_boundary() != boundary


def test_a_writer_that_fails_is_logged_and_the_package_writes(monkeypatch, caplog):
    """A bug in the writer costs speed, not the message, and says so."""
    monkeypatch.setattr(wire, "_written", mock.Mock(side_effect=RuntimeError("a bug")))
    with caplog.at_level(logging.WARNING, logger="s3outbox"):
        data = same(PLAIN)
    assert b"\r\n\r\nhello" in data
    assert "the wire writer failed on <1.ab@people.net>" in caplog.text
    assert "RuntimeError: a bug" in caplog.text
