#!/usr/bin/env python3
"""An alert with an attachment to N volunteers in a real Sahana Eden: the
hand-over's time and the outbox's size.

    .venv/bin/python bench/eden_attach.py                  N=1000, 1 MB, SQLite and PostgreSQL
    .venv/bin/python bench/eden_attach.py --n 2000 --db postgres --size 100000

For each database an Eden runtime is built from ../shared/eden-asp (as the
Eden tests build it, the outbox installed from this checkout) with a group of
N persons, each with an EMAIL contact, and a doc_document whose file is
``--size`` random bytes. Then, with no worker running, ``msg.send_by_pe_id(group,
subject, body, document_ids=[it])`` and Eden's ``msg.process_outbox("EMAIL")``
timed from its start to its end (everything queued and committed). Reported:
that time, the outbox rows queued, the bytes the outbox keeps for them (its
bodies, its attachment rows' payloads and the shared payloads), and how much
the outbox's tables grew on disk (SQLite: the database file; PostgreSQL:
``pg_total_relation_size``). ``--folder`` reuses a runtime built before
(the outbox installed again from this checkout, so one runtime measures two
versions).
"""

import argparse
import json
import os
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _path in (os.path.join(ROOT, "scripts"), os.path.join(ROOT, "tests"), HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from edenapp import EdenApp, tarball, value  # noqa: E402

SENDER = "Eden Bench <eden@bench.localhost>"


def disk_size(app):
    """Bytes the outbox's tables take on disk (SQLite: the whole file)."""
    if app.db_uri.startswith("postgres"):
        return int(
            app.query(
                "SELECT COALESCE(SUM(pg_total_relation_size(oid)), 0) FROM pg_class "
                "WHERE relname LIKE 'msg_mail_outbox%' AND relkind = 'r'"
            )[0][0]
        )
    return sum(
        os.path.getsize(app.db_path + ext)
        for ext in ("", "-wal")
        if os.path.exists(app.db_path + ext)
    )


def stored(app, subject):
    """(rows, body bytes, attachment rows, attachment payload bytes, shared
    payload bytes) of the outbox messages with ``subject``."""
    rows, body = app.query(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM msg_mail_outbox WHERE subject=?",
        (subject,),
    )[0]
    mine = "outbox_id IN (SELECT id FROM msg_mail_outbox WHERE subject=?)"
    parts, payload = app.query(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM "
        "msg_mail_outbox_attachment WHERE " + mine,
        (subject,),
    )[0]
    try:  # the shared payloads (this version's table)
        shared = app.query(
            "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM msg_mail_outbox_blob WHERE id IN "
            "(SELECT blob_id FROM msg_mail_outbox_attachment WHERE " + mine + ")",
            (subject,),
        )[0][0]
    except Exception:  # noqa: BLE001 (an older version: no such table or column)
        shared = 0
    return int(rows), int(body), int(parts), int(payload), int(shared)


def runtime(folder, db_uri, args):
    """The Eden runtime in ``folder``, built (with its group and document) once."""
    app = EdenApp(folder, db_uri=db_uri, mail=dict(server="127.0.0.1:9", sender=SENDER))
    state = os.path.join(folder, "bench-attach.json")
    if os.path.exists(state):
        with open(state) as f:
            app.db_uri, saved = json.load(f)
        app.installer()  # this checkout's outbox
    else:
        app.build()
        group = value(app.shell("volunteers", "Attach bench", args.n, "attach.bench"), "pe_id")
        document = value(app.shell("document", args.size), "document_id")
        saved = dict(group=group, document=document, n=args.n, size=args.size)
        with open(state, "w") as f:
            json.dump([app.db_uri, saved], f)
    return app, saved


def new_postgres():
    """A new PostgreSQL database, kept for --folder (drop it by hand)."""
    import psycopg2
    from conftest import DATABASES, libpq_dsn

    name = "eden_attach_%s" % uuid.uuid4().hex[:8]
    admin = psycopg2.connect(libpq_dsn(DATABASES["postgres"]))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("CREATE DATABASE %s" % name)
    admin.close()
    base = DATABASES["postgres"].partition("://")[2].partition("?")[0]
    login, _, place = base.rpartition("@")
    print("PostgreSQL database %s (drop it by hand)" % name, flush=True)
    return "postgres://%s@%s/%s" % (login.partition(":")[0], place.rpartition("/")[0], name)


def measure(app, saved, name):
    subject = "Attach bench %s" % uuid.uuid4().hex[:8]
    before = disk_size(app)
    out = app.shell("timed_alert", saved["group"], subject, saved["document"], timeout=3600)
    rows, body, parts, payload, shared = stored(app, subject)
    result = dict(
        db=name,
        n=saved["n"],
        size=saved["size"],
        seconds=float(value(out, "seconds")),
        rows=rows,
        body_bytes=body,
        attachment_rows=parts,
        payload_bytes=payload,
        shared_bytes=shared,
        disk_growth=disk_size(app) - before,
    )
    print(json.dumps(result), flush=True)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="volunteers (1000)")
    parser.add_argument("--size", type=int, default=1000000, help="attachment bytes (1000000)")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--runs", type=int, default=1, help="alerts a database (1)")
    parser.add_argument("--folder", help="where to build, or the runtimes to reuse")
    args = parser.parse_args(argv)
    if tarball() is None:
        parser.error("no Eden snapshot in ../shared/eden-asp/")
    import tempfile

    folder = args.folder or tempfile.mkdtemp(prefix="eden-attach-")
    results = []
    for name in ("sqlite", "postgres"):
        if args.db not in (name, "both"):
            continue
        where = os.path.join(folder, name)
        uri = None
        if name == "postgres" and not os.path.exists(os.path.join(where, "bench-attach.json")):
            uri = new_postgres()
        app, saved = runtime(where, uri, args)
        results += [measure(app, saved, name) for _ in range(args.runs)]
    print("runtimes in %s" % folder)
    return results


if __name__ == "__main__":
    main()
