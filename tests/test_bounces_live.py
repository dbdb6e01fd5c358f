"""Bounces with real parts: mail goes out through a real Postfix on loopback
(tests/postfix.py), which accepts it, then bounces the mail for
dead.people.net (5.1.1) and defers full.people.net (a delay warning, 4.x.x)
and mails its own delivery status notifications to the envelope sender,
bounces+TOKEN@bounce.people.net, which it delivers into a real Dovecot
(tests/dovecot.py) with dovecot-lda. The bounce reader reads that mailbox
over IMAP (TLS) or POP3 (TLS)."""

import json
import socket
import threading

import pytest
from bounce_mail import BOUNCE, dsn, hostile
from dovecot import Dovecot
from dovecot import unusable as no_dovecot
from helpers import wait_for
from postfix import Postfix
from postfix import unusable as no_postfix

from s3outbox.bounces import reader as bounces
from s3outbox.delivery import returnpath

pytestmark = pytest.mark.skipif(
    bool(no_postfix() or no_dovecot()), reason=str(no_postfix() or no_dovecot())
)


@pytest.fixture(scope="module")
def servers():
    with Dovecot() as box, Postfix(mailbox=box) as relay:
        yield box, relay


@pytest.fixture
def box(servers, mail):
    """The mailbox, emptied, with ``mail`` sending through Postfix and reading it."""
    box, relay = servers
    box.clear()
    mail.settings.update(
        server=relay.server,
        bounce_address=BOUNCE,
        bounce_mailbox=box.url("imaps"),
        ssl_context=box.context(),
        batch_size=500,
    )
    return box


def rows(mail):
    return {r.id: r for r in mail.db(mail.store.outbox).select(orderby=mail.store.outbox.id)}


def send_all(mail, addresses):
    for n, to in enumerate(addresses):
        assert mail.send(to=to, subject="Flood warning %d" % n, message="Move uphill."), mail.error
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
            assert (
                "5.1.1" in r.last_error and "user unknown: mailbox unavailable" in r.last_error
            ), r.last_error
    a = mail.store.attempt
    logged = mail.db(a.outcome == "bounced").select()
    assert len(logged) == 20 and {found[x.outbox_id].address for x in logged} == dead
    assert box.count() == 0  # matched mail is removed
    again = bounces.read_bounces(mail)
    assert (again["read"], again["marked"]) == (0, 0)
    print(
        "\nbounces: 200 sent through Postfix, 20 reports landed; one reader pass: "
        "%s; bounced %d of 20, marked %d of the other 180"
        % (counts, len(bounced), 180 - sum(1 for r in found.values() if r.status == "sent"))
    )


def test_a_delay_report_is_recorded_only(mail, box):
    send_all(mail, ["slow@full.people.net", "fine@people.net"])
    assert wait_for(lambda: box.count() >= 1, timeout=120)
    counts = bounces.read_bounces(mail)
    assert counts["delayed"] == 1 and counts["marked"] == 0, counts
    found = list(rows(mail).values())
    assert [r.status for r in found] == ["sent", "sent"]
    a = mail.store.attempt
    delayed = mail.db(a.outcome == "delayed").select().first()
    assert (
        delayed.outbox_id == found[0].id
        and "4.3.0" in delayed.error
        and "mailbox full" in delayed.error
    )
    assert box.count() == 0


def test_any_text_in_a_report_is_kept(mail, box):
    """A report with a valid TOKEN whose diagnostic holds characters beyond
    three UTF-8 bytes (MariaDB's utf8) and markup: recorded as it was said."""
    send_all(mail, ["f@people.net"])
    row = list(rows(mail).values())[0]
    own = returnpath.envelope(
        BOUNCE, returnpath.token(returnpath.key(mail.store), row.id, row.message_id)
    )
    box.append(
        [
            dsn(own, "f@people.net", row.message_id).replace(
                b"550 5.1.1 forged", "552 5.2.2 Postfach voll 📭 <b>".encode()
            )
        ]
    )
    counts = bounces.read_bounces(mail)
    assert counts["marked"] == 1 and counts["skipped"] == 0, counts
    assert rows(mail)[row.id].last_error.endswith("smtp; 552 5.2.2 Postfach voll 📭 <b>")


def test_a_report_without_token_matches_by_message_id(mail, box):
    """A server that bounced to the plain bounce address (or the From), in
    qmail's non-standard form: matched by the Message-ID the outbox gave,
    for that message's own recipient."""
    send_all(mail, ["gil@people.net", "hal@people.net"])
    gil, hal = rows(mail).values()
    box.append(
        [
            (
                "From: MAILER-DAEMON@mx.people.net\r\nTo: %s\r\nSubject: failure "
                "notice\r\n\r\nHi. This is the qmail-send program.\r\n\r\n"
                "<gil@people.net>:\r\nSorry, no mailbox here by that name. (#5.1.1)"
                "\r\n\r\n--- Below this line is a copy of the message.\r\n\r\n"
                "Message-ID: %s\r\nSubject: x\r\n" % (BOUNCE, gil.message_id)
            ).encode()
        ]
    )
    counts = bounces.read_bounces(mail)
    assert (counts["matched"], counts["marked"]) == (1, 1), counts
    found = rows(mail)
    assert (found[gil.id].status, found[hal.id].status) == ("bounced", "sent")
    assert "no mailbox here" in found[gil.id].last_error


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
    # Each delivered file keeps its envelope sender on its "From " line.
    got = wait_for(
        lambda: [m.decode() for m in relay.deliveries() if row.message_id.encode() in m],
        timeout=60,
    )
    envelope = got[0].split(None, 2)[1]
    secret = returnpath.key(mail.store)
    assert envelope == "bounces+%s@bounce.people.net" % returnpath.token(
        secret, row.id, row.message_id
    )
    assert "From: Outbox <outbox@outbox.localhost>" in got[0]


def test_a_wrong_password_is_never_shown(mail, box, caplog):
    mail.settings.bounce_mailbox = box.url("imaps", password="wrong-secret-xyz")
    counts = bounces.read_bounces(mail)
    assert counts["error"] and "wrong-secret-xyz" not in counts["error"]
    assert "wrong-secret-xyz" not in caplog.text
    assert "AUTHENTICATIONFAILED" in counts["error"] or "uthentication" in counts["error"]


def test_refused_recipients_count_towards_bounced(mail, box):
    """Two recipients: one refused at sending, one bounced later: bounced."""
    assert mail.send(to=["refused@people.net", "e@dead.people.net"], subject="x", message="y")
    mail.db.commit()
    assert mail.process_outbox()["sent"] == 1
    assert json.loads(list(rows(mail).values())[0].refused)
    assert wait_for(lambda: box.count() >= 1, timeout=120)
    assert bounces.read_bounces(mail)["marked"] == 1


# ------------------------------------------------------------ hostile mail
def snapshot(mail):
    o = mail.store.outbox
    return {
        r.id: (r.status, r.last_error, r.attempts, r.last_code)
        for r in mail.db(o).select(o.id, o.status, o.last_error, o.attempts, o.last_code)
    }


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_100_forged_or_malformed_reports_change_nothing(mail, box, caplog, scheme):
    """Over IMAP one pass reads all 105; over POP3 a line longer than poplib
    takes ends a pass (that message is skipped at once), so passes go on
    until one finds nothing new."""
    mail.settings.bounce_mailbox = box.url(scheme)
    send_all(mail, ["t%02d@people.net" % n for n in range(30)])
    targets = list(rows(mail).values())
    before = snapshot(mail)
    box.append(hostile(mail, targets))
    send_all(
        mail,
        ["g%d@dead.people.net" % n for n in range(5)] + ["g%d@people.net" % n for n in range(5)],
    )
    assert wait_for(lambda: box.count() >= 105, timeout=120)
    total = dict(read=0, matched=0, skipped=0, marked=0, passes=0, too_long=0)
    while total["passes"] < 12:
        counts = bounces.read_bounces(mail)
        total["passes"] += 1
        if counts["error"] is not None:
            assert "line too long" in counts["error"], counts
            total["too_long"] += 1
        for key in ("read", "matched", "skipped", "marked"):
            total[key] += counts[key]
        if not counts["read"] and counts["error"] is None:
            break
    # Each POP3 line too long is skipped at once, by the pass it ended.
    too_long = total.pop("too_long")
    assert total == dict(
        read=105 - too_long, matched=5, skipped=100 - too_long, marked=5, passes=too_long + 2
    ), (total, too_long)
    assert (too_long == 0) == (scheme == "imaps")
    print(
        "\nbounces (%s): 100 forged or malformed + 5 real reports: %s, POP3 lines "
        "too long %d" % (scheme, total, too_long)
    )
    after = snapshot(mail)
    assert {k: v for k, v in after.items() if k in before} == before  # 0 changed
    assert sorted(r.address for r in rows(mail).values() if r.status == "bounced") == [
        "g%d@dead.people.net" % n for n in range(5)
    ]
    a = mail.store.attempt
    assert mail.db(a.outcome.belongs(("bounced", "delayed"))).count() == 5
    assert box.count() == 100  # mail not understood stays
    assert "Traceback" not in caplog.text


# --------------------------------------------------- a line that goes dead
class Cutter:
    """A TCP relay to the real mailbox that drops the connection once the
    server has sent ``limit`` bytes (the TLS stays end to end): a mailbox
    that disconnects mid-read."""

    def __init__(self, port, limit):
        self.port, self.limit = port, limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url_port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.port))
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, self.limit), daemon=True
            ).start()

    @staticmethod
    def _pipe(src, dst, limit):
        sent = 0
        try:
            while limit is None or sent < limit:
                data = src.recv(4096 if limit is None else min(4096, limit - sent))
                if not data:
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.listener.close()


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_a_mailbox_that_drops_mid_read_loses_nothing(mail, box, scheme):
    send_all(mail, ["h%d@dead.people.net" % n for n in range(6)] + ["h@people.net"])
    assert wait_for(lambda: box.count() >= 6, timeout=120)
    box.append([b"From: ann@people.net\r\nSubject: hello\r\n\r\nnot a report\r\n"])
    port = box.imaps if scheme == "imaps" else box.pop3s
    for limit in (300, 9000, 16000):  # at the greeting, then in the middle of reading
        cutter = Cutter(port, limit)
        try:
            mail.settings.bounce_mailbox = box.url(scheme, port=cutter.url_port)
            counts = bounces.read_bounces(mail)
        finally:
            cutter.close()
        assert counts["error"], counts  # logged, and the pass ended
        assert "Traceback" not in str(counts["error"])
    mail.settings.bounce_mailbox = box.url(scheme)
    counts = bounces.read_bounces(mail)
    assert counts["error"] is None, counts
    found = list(rows(mail).values())
    assert [r.status for r in found] == ["bounced"] * 6 + ["sent"]
    a = mail.store.attempt
    assert mail.db(a.outcome == "bounced").count() == 6  # each report counted once
    assert box.count() == 1  # the one that is not a report stays
