"""Reports for the bounce tests (tests/test_bounces_live.py and
tests/test_bounces_site.py): a delivery report in RFC 3464's form, and 100
forged or malformed ones about sent outbox rows."""

from s3outbox.delivery import returnpath

BOUNCE = "bounces@bounce.people.net"

DSN = """\
From: Mail Delivery System <MAILER-DAEMON@relay.evil.net>
To: {to}
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.evil.net

Final-Recipient: rfc822; {rcpt}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 forged

--B
Content-Type: text/rfc822-headers

Message-ID: {mid}
From: outbox@outbox.localhost

--B--
"""


def dsn(to, rcpt, mid, extra=""):
    return (DSN.format(to=to, rcpt=rcpt, mid=mid) + extra).replace("\n", "\r\n").encode()


def hostile(mail, targets):
    """100 forged or malformed reports about the sent rows ``targets``."""
    secret = returnpath.key(mail.store)
    out = []
    for r in targets[:20]:  # wrong TOKEN (a MAC made without the key)
        out.append(
            dsn("bounces+%d-%s@bounce.people.net" % (r.id, "0" * 20), r.address, r.message_id)
        )
    for n in range(10):  # no TOKEN, unknown Message-ID
        out.append(dsn(BOUNCE, "x%d@people.net" % n, "<nope.%d@outbox.localhost>" % n))
    for r in targets[:10]:  # a real Message-ID, for another recipient
        out.append(dsn(BOUNCE, "someone.else@evil.net", r.message_id))
    for r in targets[:4]:  # non-standard, real Message-ID, another recipient
        out.append(
            (
                "From: MAILER-DAEMON@evil.net\r\nSubject: failure notice\r\n\r\n"
                "<other@evil.net>:\r\n550 5.1.1 no such user\r\n\r\n--- Below this "
                "line is a copy of the message.\r\n\r\nMessage-ID: %s\r\n" % r.message_id
            ).encode()
        )
    out += not_reports(targets)
    out += malformed(targets)
    for r in targets[:10]:  # a loop: a report on mail to the bounce address itself
        own = "bounces+%s@bounce.people.net" % returnpath.token(secret, r.id, r.message_id)
        out.append(dsn(own, own, "<loop.%d@relay.evil.net>" % r.id))
    for n in range(10):  # a report on a report (a double bounce)
        inner = dsn(BOUNCE, "x@people.net", "<inner.%d@outbox.localhost>" % n).decode()
        out.append(
            dsn(BOUNCE, BOUNCE, "<dsn.%d@relay.evil.net>" % n, "\n" + inner.replace("\r\n", "\n"))
        )
    big = b"X" * 998 + b"\r\n"
    out.append(
        dsn(
            "bounces+%d-%s@bounce.people.net" % (targets[0].id, "1" * 20),
            targets[0].address,
            targets[0].message_id,
        )
        + big * (30 * 1024 * 1024 // len(big))
    )  # 30 MB
    assert len(out) == 100, len(out)
    return out


def not_reports(targets):
    r = targets[0]
    return [
        b"From: ann@people.net\r\nSubject: Re: Flood warning\r\n\r\nThanks!\r\n",
        b"From: bob@people.net\r\nSubject: Out of office\r\nAuto-Submitted: auto-replied"
        b"\r\n\r\nI am away until Monday.\r\n",
        b"From: MAILER-DAEMON@evil.net\r\nSubject: Undelivered Mail\r\n\r\nNo code.\r\n",
        (
            "From: news@evil.net\r\nSubject: 550 reasons\r\n\r\n550 5.1.1 Message-ID: %s"
            "\r\n" % r.message_id
        ).encode(),
        b"Subject: nothing\r\n\r\n",
        b"\r\n\r\n",
        b"From: a@b.c\r\n\r\n" + b"x" * 100000 + b"\r\n",
        b"From: postmaster@evil.net\r\nSubject: Delivery Status Notification (Success)\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=Z\r\n\r\n"
        b"--Z\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n"
        b"\r\nFinal-Recipient: rfc822; a@people.net\r\nAction: delivered\r\n"
        b"Status: 2.0.0\r\n\r\n--Z--\r\n",
    ] + [
        ("From: spam%d@evil.net\r\nSubject: offer %d\r\n\r\nBuy now.\r\n" % (n, n)).encode()
        for n in range(7)
    ]


def malformed(targets):
    r = targets[1]
    deep = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (n, n)
        for n in range(400)
    )
    many = b"".join(
        b"--M\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\n\r\n"
        for n in range(3000)
    )
    return [
        bytes(range(256)) * 40,
        b"From: MAILER-DAEMON@evil.net\r\nContent-Type: multipart/report; boundary=\r\n"
        b"\r\n--\r\n--\r\nAction: failed\r\n",
        b"From: MAILER-DAEMON@evil.net\r\nContent-Type: multipart/report; boundary=X\r\n"
        b"\r\n--X\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: "
        b"base64\r\n\r\n!!!not base64!!!\r\n--X",
        b"From: MAILER-DAEMON@evil.net\r\n" + deep,
        b"From: MAILER-DAEMON@evil.net\r\nContent-Type: multipart/report; boundary=M\r\n"
        b"\r\n" + many + b"--M--\r\n",
        b"From: MAILER-DAEMON@evil.net\r\nContent-Type: text/plain; charset=x-nonsense\r\n"
        b"Subject: failure notice\r\n\r\n\xff\xfe 550 5.1.1 \x00\x00 Message-ID: "
        + r.message_id.encode()
        + b"\r\n",
        (
            "From: MAILER-DAEMON@evil.net\r\nContent-Type: multipart/report; boundary=Q\r\n"
            "\r\n--Q\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; "
            "%s\r\nAction: failed\r\nStatus: 9.9.9\r\n\r\n--Q--\r\n" % r.address
        ).encode(),
        b"Content-Type: message/delivery-status\r\n\r\nAction: failed\r\nStatus: 5.1.1\r\n",
        (
            "From: MAILER-DAEMON@evil.net\r\nTo: bounces+%d-%s@bounce.people.net\r\n"
            "Subject: =?utf-8?B?////?=\r\n\r\n<%s>:\r\n550 5.1.1\r\n" % (r.id, "f" * 20, r.address)
        ).encode(),
        (
            "From: MAILER-DAEMON@evil.net\r\nTo: bounces+99999999999-%s@bounce.people.net"
            "\r\nSubject: failure notice\r\n\r\n550 5.1.1 gone\r\n" % ("a" * 20)
        ).encode(),
        (
            "From: MAILER-DAEMON@evil.net\r\nTo: bounces+%d-%s@bounce.people.net\r\n"
            "Subject: failure notice\r\n\r\n550 5.1.1 gone\r\n" % (r.id, "g" * 20)
        ).encode(),
        b"From: MAILER-DAEMON@evil.net\r\nSubject: failure notice\r\nContent-Type: "
        b"text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"=ZZ=4 550 5.1.1 Message-ID: <=00@=FF>\r\n",
        b"From: \x00MAILER-DAEMON\r\n\r\nMessage-ID: <" + b"a" * 5000 + b"@x>\r\n550 5.1.1\r\n",
        b"From: MAILER-DAEMON@evil.net\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: "
        + r.message_id.encode()
        + b"\r\n\r\n550 5.1.1\r\n",
        b"From: MAILER-DAEMON@evil.net\r\n" + b"X-Long: " + b"y" * 60000 + b"\r\n\r\nz\r\n",
        (
            "From: MAILER-DAEMON@evil.net\r\nSubject: failure notice\r\n\r\n<%s>:\r\n"
            "Message-ID: %s\r\n" % (r.address, r.message_id)
        ).encode(),
        b'From: MAILER-DAEMON@evil.net\r\nContent-Type: multipart/report; boundary="\r\n\r\n\r\n',
        b"From: MAILER-DAEMON@evil.net\r\nContent-Type: text/plain; charset=utf-16\r\n"
        b"Subject: failure notice\r\n\r\n\xd8\x00\xdc 550 5.1.1\r\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=E\r\n\r\n"
        b"--E\r\nContent-Type: message/delivery-status\r\n\r\n--E--\r\n",
        b"\xff\xfe\xfd\r\n\r\n\xff",
    ]
