"""The Message value type: recipients(), frozen, and its stored JSON form."""

import dataclasses
import datetime
import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from s3outbox.delivery.message import InvalidMessage, Message, normalize


def test_recipients_are_to_cc_and_bcc_as_smtp_takes_them():
    msg = normalize(
        to=["Ann <ann@people.net>", "bo@bücher.de"],
        cc="cy@people.net",
        bcc="Dee <dee@people.net>",
        message="hi",
    )
    assert msg.recipients() == [
        "ann@people.net",
        "bo@xn--bcher-kva.de",
        "cy@people.net",
        "dee@people.net",
    ]
    assert msg.first_address() == "ann@people.net"
    assert normalize(bcc="dee@people.net", message="hi").first_address() == "dee@people.net"
    assert normalize(pe_id=5, message="hi").first_address() is None


def test_a_message_cannot_be_changed_once_checked():
    msg = normalize(to="ann@people.net", message="hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.to = ("eve@evil.net",)
    other = dataclasses.replace(msg, to=("bo@people.net",))
    assert msg.recipients() == ["ann@people.net"] and other.recipients() == ["bo@people.net"]


def test_stored_form_round_trips_and_leaves_attachments_out():
    msg = normalize(
        to="ann@people.net",
        subject="Hi",
        message=("text", "<p>html</p>"),
        headers={"X-A": "1"},
        reply_to="r@people.net",
    )
    stored = json.loads(msg.to_json())
    assert list(stored) == [
        "to",
        "cc",
        "bcc",
        "reply_to",
        "sender",
        "from_address",
        "subject",
        "text",
        "html",
        "headers",
        "raw",
    ]
    assert stored["to"] == ["ann@people.net"] and stored["headers"] == {"X-A": "1"}
    again = Message.from_json(msg.to_json())
    assert again == dataclasses.replace(msg, size=0)


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        '{"to":["x@people.net"]}',
        '{"to":7,"cc":[],"bcc":[],"reply_to":[],"sender":null,'
        '"from_address":null,"subject":"","text":"t",'
        '"html":null,"headers":{},"raw":false}',
        '{"to":[],"cc":[],"bcc":[],"reply_to":[],"sender":null,'
        '"from_address":null,"subject":"","text":"t",'
        '"html":null,"headers":[],"raw":false}',
    ],
)
def test_a_stored_form_that_is_not_a_message_is_refused(body):
    with pytest.raises((ValueError, KeyError)):
        Message.from_json(body)


def test_normalize_refuses_what_cannot_be_a_message():
    with pytest.raises(InvalidMessage, match="no recipient"):
        normalize(message="hi")


class _NothingYet:
    """A file that reads as None, as a non-blocking raw stream with no data does."""

    def read(self):
        return None


@pytest.mark.parametrize("field", ["message", "subject"])
def test_a_file_that_reads_as_nothing_is_refused(field):
    """Found by mypy: such a subject was queued as None and failed at delivery,
    such a body raised AttributeError inside send()."""
    with pytest.raises(InvalidMessage, match="%s must be text, not NoneType" % field):
        normalize(to="ann@people.net", **{field: _NothingYet()})


def test_a_stored_message_without_a_body_is_refused_when_built():
    from s3outbox.delivery.message import build

    msg = dataclasses.replace(normalize(to="ann@people.net", message="hi"), text=None)
    with pytest.raises(ValueError, match="no body"):
        build(msg, "outbox@people.net", "<1@people.net>", datetime.datetime(2026, 12, 4))


def test_message_ids_stay_unique_when_random_is_reseeded():
    """Hypothesis reseeds the random module for every example; make_msgid
    then gave two messages queued in the same 10 ms the same id."""
    import random

    from s3outbox.delivery.message import make_message_id

    ids = set()
    for _ in range(3):
        random.seed(42)
        ids.add(make_message_id("Outbox <outbox@bücher.de>"))
    assert len(ids) == 3
    assert all(i.startswith("<") and i.endswith("@xn--bcher-kva.de>") for i in ids)


@given(st.text(), st.sampled_from(["plain", "html"]))
@example("", "plain")
@example("caf\u00e9 = 100%\n.line\r\nlong " * 30, "html")
def test_text_part_is_mimetext(text, subtype):
    """_text_part builds the bytes (or the error) MIMEText(..., "utf-8") does."""
    from email.mime.text import MIMEText

    from s3outbox.delivery.message import _text_part, wire

    def made(make):
        try:
            return wire(make())
        except Exception as e:
            return repr(e)

    assert made(lambda: _text_part(text, subtype)) == made(
        lambda: MIMEText(text, subtype, _charset="utf-8")
    )


class _Slow(str):
    """A str that parse_addresses() does not take as a plain address."""


_ATOM = st.text("aZ09_+-.", min_size=1, max_size=8)


@given(
    st.builds(
        "{}@{}{}".format,
        _ATOM,
        _ATOM,
        st.sampled_from(["", ".net", ".-x", ".x-", "..net", ".a" * 40]),
    )
)
@example("ann.lee@people.net")
@example("a@" + "b" * 64 + ".net")
def test_plain_addresses_are_taken_as_the_full_checks_take_them(address):
    """The shortcut for plain addresses gives what the full checks give (or
    both refuse), for near misses too: dots, hyphens, long labels."""
    from s3outbox.delivery.message import parse_addresses

    def parsed(value):
        try:
            return parse_addresses([value])
        except InvalidMessage as e:
            return "refused: %s" % e

    assert parsed(address) == parsed(_Slow(address))


@pytest.mark.parametrize(
    "value",
    [
        "u@x>, <http://evil.example/",
        "u@x.net>, <http://evil.example/",
        "u@x.net, v@y.net",
        "u@x.net?subject=<b>",
        "two words@x.net",
        "<u@x.net>",
    ],
)
def test_list_unsubscribe_is_one_mailto_uri(value):
    """Issue 20: the value went into <mailto:%s> unchecked, so '>, <' began
    a second URI of the sender's choosing."""
    with pytest.raises(InvalidMessage, match="list_unsubscribe .* one e-mail address"):
        normalize(to="ann@people.net", list_unsubscribe=value)


@pytest.mark.parametrize(
    "value", ["leave@people.net", "leave@people.net?subject=unsubscribe%20me"]
)
def test_list_unsubscribe_takes_an_address_and_its_hfields(value):
    msg = normalize(to="ann@people.net", list_unsubscribe=value)
    assert msg.headers["List-Unsubscribe"] == "<mailto:%s>" % value
