#!/usr/bin/env python3
"""How near to sqlite3's own INSERT + commit any Python send() can come.

bench.py times send() with a commit each against sqlite3 inserting the same
row, in turns. This script adds a third side to the same turns: the least a
send() has to do in Python besides the INSERT (a Message-ID, a timestamp and
the JSON of the message; no checks at all), through the same connection as
send(). Where even that side is above 1.1x the floor, the rest of the gap is
the price of running Python between two commits (after each fsync the
process starts again with cold caches), not of send()'s checks.

    .venv/bin/python bench/enqueue_floor.py [--messages 2000] [--journal delete]
"""

import argparse
import json
import os
import secrets
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for _path in (os.path.join(os.path.dirname(HERE), "modules"), HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import bench  # noqa: E402

TO, SUBJECT = "person0@people.net", "Benchmark message 0"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--journal", choices=("wal", "delete"), default="wal")
    parser.add_argument("--size", type=int, default=1500, help="body bytes")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="enqueue-floor-") as folder:
        out = _measure(folder, args)
    floor = out["sqlite3"]["commit_each_mean"]
    print(
        "journal %s, %d messages in turns, ms per insert with a commit each:"
        % (args.journal, args.messages)
    )
    for name, figures in out.items():
        each = figures["commit_each_mean"]
        print("  %-8s %.3f ms  %.2fx" % (name, each, each / floor))


def _measure(folder, args):
    """bench.timed() of the three sides, in a database in ``folder``."""
    wal = args.journal == "wal"
    target = bench.Target("sqlite", "sqlite://floor.sqlite", "msg_outbox", folder, wal)
    db = target.connect()
    mail = target.mail(db, "127.0.0.1:25", migrate=True)
    body = bench.body_text(args.size)

    def send():
        mail.send(TO, SUBJECT, body)

    send()
    db.commit()
    insert, commit, close = bench.raw_sqlite(
        os.path.join(folder, "floor.sqlite"), "msg_outbox", wal
    )
    sides = dict(
        send=(send, db.commit), least=(_least(mail, body), db.commit), sqlite3=(insert, commit)
    )
    bench.timed(sides, 50)  # warm up
    out = bench.timed(sides, args.messages)
    close()
    db.close()
    return out


def _least(mail, body):
    """An insert of send()'s row with only what any send() must compute."""
    from s3outbox.delivery.store import _ENQUEUED, utcnow

    sql = "INSERT INTO msg_outbox (%s) VALUES (%s)" % (
        ", ".join(_ENQUEUED),
        ", ".join("?" * len(_ENQUEUED)),
    )
    cursor = mail.db._adapter.cursor
    size = len(body.encode("utf-8"))

    def insert():
        now = utcnow()
        message_id = "<%d.%s@bench.localhost>" % (time.time() * 100, secrets.token_hex(10))
        text = json.dumps(
            {
                "to": [TO],
                "cc": [],
                "bcc": [],
                "reply_to": [],
                "sender": None,
                "from_address": None,
                "subject": SUBJECT,
                "text": body,
                "html": None,
                "headers": {},
                "raw": False,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        cursor.execute(
            sql,
            (
                message_id,
                None,
                TO,
                "EMAIL",
                "queued",
                5,
                0,
                now,
                None,
                now,
                None,
                SUBJECT,
                text,
                0,
                size,
            ),
        )

    return insert


if __name__ == "__main__":
    main()
