# -*- coding: utf-8 -*-
"""pipeline.quoteaddr() writes an address exactly as smtplib.quoteaddr()."""

import smtplib

import pytest

from s3outbox.pipeline import quoteaddr

ADDRESSES = [
    "ann@people.net", "a.b-c+tag@mail.example.org", "o'brien@people.net",
    "x_y=z!#$%&*/?^`{|}~@a-b.c", "a..b@people.net", ".a@people.net", "a.@people.net",
    "ann@people..net", "ann@-people.net", "Ann <ann@people.net>", "<ann@people.net>",
    '"ann smith"@people.net', "ann@[127.0.0.1]", "ann", "", "ann@people.net (Ann)",
    "ann@people.net, bob@people.net", "caf\u00e9@people.net", "ann@caf\u00e9.net",
    "ann @people.net", "ann@people.net.",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_quoteaddr_is_smtplibs(address):
    assert quoteaddr(address) == smtplib.quoteaddr(address)
