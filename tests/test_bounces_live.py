# -*- coding: utf-8 -*-
"""Bounces with real parts: mail goes out through a real Postfix on loopback
(tests/postfix.py), which accepts it, then bounces the mail for
dead.people.net (5.1.1) and defers full.people.net (a delay warning, 4.x.x)
and mails its own delivery status notifications to the envelope sender,
bounces+TOKEN@bounce.people.net, which it delivers into a real Dovecot
(tests/dovecot.py) with dovecot-lda. The bounce reader reads that mailbox
over IMAP (TLS) or POP3 (TLS)."""

import json

import pytest

from dovecot import Dovecot, unusable as no_dovecot
from helpers import wait_for
from postfix import Postfix, unusable as no_postfix
from s3outbox import bounces, returnpath

pytestmark = pytest.mark.skipif(bool(no_postfix() or no_dovecot()),
                                reason=str(no_postfix() or no_dovecot()))
BOUNCE = "bounces@bounce.people.net"


@pytest.fixture(scope="module")
def servers():
    with Dovecot() as box, Postfix(mailbox=box) as relay:
        yield box, relay


@pytest.fixture
def box(servers, mail):
    """The mailbox, emptied, with ``mail`` sending through Postfix and reading it."""
    box, relay = servers
    box.clear()
    mail.settings.update(server=relay.server, bounce_address=BOUNCE,
                         bounce_mailbox=box.url("imaps"), ssl_context=box.context(),
                         batch_size=500)
    return box


def rows(mail):
    return {r.id: r for r in mail.db(mail.store.outbox).select(orderby=mail.store.outbox.id)}


def send_all(mail, addresses):
    for n, to in enumerate(addresses):
        assert mail.send(to=to, subject="Flood warning %d" % n, message="Move uphill."), \
            mail.error
    mail.db.commit()
    counts = mail.process_outbox()
    assert counts["sent"] == len(addresses), counts


def test_200_mails_20_bounce_all_marked_in_one_pass(mail, box, servers):
    dead = {"v%03d@dead.people.net" % n for n in range(20)}
    addresses = ["v%03d@people.net" % n for n in range(180)] + sorted(dead)
    send_all(mail, addresses)
    assert wait_for(lambda: box.count() >= 20, timeout=120), servers[1].log()[-3000:]
    counts = bounces.read_bounces(mail)
    assert counts["error"] is None and counts["marked"] == 20, counts
    found = rows(mail)
    bounced = {r.address for r in found.values() if r.status == "bounced"}
    assert bounced == dead
    assert sum(1 for r in found.values() if r.status == "sent") == 180
    for r in found.values():
        if r.status == "bounced":
            # Postfix's own words: the status and its pipe's diagnostic
            assert "5.1.1" in r.last_error and \
                "user unknown: mailbox unavailable" in r.last_error, r.last_error
    a = mail.store.attempt
    logged = mail.db(a.outcome == "bounced").select()
    assert len(logged) == 20 and {found[x.outbox_id].address for x in logged} == dead
    assert box.count() == 0  # matched mail is removed
    again = bounces.read_bounces(mail)
    assert (again["read"], again["marked"]) == (0, 0)


def test_a_delay_report_is_recorded_only(mail, box):
    send_all(mail, ["slow@full.people.net", "fine@people.net"])
    assert wait_for(lambda: box.count() >= 1, timeout=120)
    counts = bounces.read_bounces(mail)
    assert counts["delayed"] == 1 and counts["marked"] == 0, counts
    found = list(rows(mail).values())
    assert [r.status for r in found] == ["sent", "sent"]
    a = mail.store.attempt
    delayed = mail.db(a.outcome == "delayed").select().first()
    assert delayed.outbox_id == found[0].id and "4.3.0" in delayed.error and \
        "mailbox full" in delayed.error
    assert box.count() == 0


def test_pop3_reads_the_same(mail, box):
    mail.settings.bounce_mailbox = box.url("pop3s")
    send_all(mail, ["a@dead.people.net", "b@people.net", "c@dead.people.net"])
    assert wait_for(lambda: box.count() >= 2, timeout=120)
    counts = bounces.read_bounces(mail)
    assert counts["marked"] == 2 and counts["error"] is None, counts
    assert [r.status for r in rows(mail).values()] == ["bounced", "sent", "bounced"]
    assert box.count() == 0


def test_the_envelope_sender_carries_the_token_and_from_stays(mail, box, servers):
    send_all(mail, ["d@people.net"])
    row = list(rows(mail).values())[0]
    relay = servers[1]
    # The mbox keeps each message's envelope sender on its "From " line.
    got = wait_for(lambda: [m for m in ("\n" + relay.log_of("out/mbox")).split("\nFrom ")
                            if row.message_id in m], timeout=60)
    envelope = got[0].split(None, 1)[0]
    secret = returnpath.key(mail.store)
    assert envelope == "bounces+%s@bounce.people.net" % returnpath.token(
        secret, row.id, row.message_id)
    assert "From: Outbox <outbox@outbox.localhost>" in got[0]


def test_a_wrong_password_is_never_shown(mail, box, caplog):
    mail.settings.bounce_mailbox = box.url("imaps", password="wrong-secret-xyz")
    counts = bounces.read_bounces(mail)
    assert counts["error"] and "wrong-secret-xyz" not in counts["error"]
    assert "wrong-secret-xyz" not in caplog.text
    assert "AUTHENTICATIONFAILED" in counts["error"] or "uthentication" in counts["error"]


def test_refused_recipients_count_towards_bounced(mail, box):
    """Two recipients: one refused at sending, one bounced later: bounced."""
    assert mail.send(to=["refused@people.net", "e@dead.people.net"], subject="x",
                     message="y")
    mail.db.commit()
    assert mail.process_outbox()["sent"] == 1
    assert json.loads(list(rows(mail).values())[0].refused)
    assert wait_for(lambda: box.count() >= 1, timeout=120)
    assert bounces.read_bounces(mail)["marked"] == 1
