"""Run inside Sahana Eden's model environment by tests/edenapp.py:
``web2py.py -S eden -M -R tests/eden_shell.py -A COMMAND ARGS``.

Commands print ``key=value`` lines, then ``s3outbox-shell-ok``:
noop (Eden's first run happens in its models), pe_id EMAIL,
send_by_pe_id PE_ID SUBJECT (Eden's msg.send_by_pe_id), process_outbox
(Eden's S3Msg.process_outbox for EMAIL), mail_send PE_ID SUBJECT
(current.mail.send(pe_id=...)), eden_status OUTBOX_ID (Eden's msg_outbox
status), group NAME PE_ID... (a pr_group with these persons as members),
person NAME (a person with no contacts), send_email TO SUBJECT CC BCC
(Eden's msg.send_email with an attachment), organisation NAME PE_ID... (staff),
settings (what EdenMail read), contact PE_ID EMAIL (an EMAIL contact),
bad_send (send() with a wrongly typed pe_id or an unknown argument),
volunteers NAME COUNT DOMAIN (a group of COUNT new persons with e-mail
contacts), process_outbox_loop COUNT PAUSE, document SIZE (a doc_document
whose file is SIZE random bytes, stored by its upload field), send_by_pe_id
PE_ID SUBJECT DOCUMENT_ID (with that document attached), timed_alert PE_ID
SUBJECT DOCUMENT_ID (send_by_pe_id without its run_async, then
process_outbox timed: bench/eden_attach.py).
"""

import sys
import time


def _pe_id(email):
    user = db(db.auth_user.email == email).select(db.auth_user.id).first()
    ltable = s3db.pr_person_user
    return db(ltable.user_id == user.id).select(ltable.pe_id).first().pe_id


def _eden_outbox_ids(message_id):
    table = s3db.msg_outbox
    return [r.id for r in db(table.message_id == message_id).select(table.id)]


def _group(name, *pe_ids):
    gtable, mtable, ptable = s3db.pr_group, s3db.pr_group_membership, s3db.pr_person
    group_id = gtable.insert(name=name, group_type=4)
    record = {"id": group_id}
    s3db.update_super(gtable, record)
    for pe_id in pe_ids:
        person = db(ptable.pe_id == int(pe_id)).select(ptable.id).first()
        mtable.insert(group_id=group_id, person_id=person.id)
    return db(gtable.id == group_id).select(gtable.pe_id).first().pe_id


def _person(name):
    ptable = s3db.pr_person
    record = {"id": ptable.insert(first_name=name)}
    s3db.update_super(ptable, record)
    return db(ptable.id == record["id"]).select(ptable.pe_id).first().pe_id


def _organisation(name, *pe_ids):
    otable, htable, ptable = s3db.org_organisation, s3db.hrm_human_resource, s3db.pr_person
    record = {"id": otable.insert(name=name)}
    s3db.update_super(otable, record)
    for pe_id in pe_ids:
        person = db(ptable.pe_id == int(pe_id)).select(ptable.id).first()
        htable.insert(organisation_id=record["id"], person_id=person.id)
    return db(otable.id == record["id"]).select(otable.pe_id).first().pe_id


def _volunteers(name, count, domain):
    """A pr_group NAME of COUNT new persons, each with an EMAIL contact
    vN@DOMAIN (N from 0), as Eden's own API makes them."""
    gtable, mtable, ptable = s3db.pr_group, s3db.pr_group_membership, s3db.pr_person
    ctable = s3db.pr_contact
    record = {"id": gtable.insert(name=name, group_type=4)}
    s3db.update_super(gtable, record)
    for n in range(int(count)):
        person = {"id": ptable.insert(first_name="Volunteer", last_name=str(n))}
        s3db.update_super(ptable, person)
        pe_id = db(ptable.id == person["id"]).select(ptable.pe_id).first().pe_id
        ctable.insert(pe_id=pe_id, contact_method="EMAIL", value="v%d@%s" % (n, domain))
        mtable.insert(group_id=record["id"], person_id=person["id"])
    return db(gtable.id == record["id"]).select(gtable.pe_id).first().pe_id


def _process_outbox_loop(count, pause):
    """Eden's process_outbox("EMAIL") COUNT times, PAUSE seconds apart, as a
    second worker or a request running it would."""
    for _ in range(int(count)):
        msg.process_outbox("EMAIL")
        db.commit()
        time.sleep(float(pause))


def _document(size):
    """A doc_document whose file is SIZE random bytes, stored as Eden's
    upload field stores a file: its id, path and the bytes' SHA-256."""
    import hashlib
    import io
    import os
    import random

    table = s3db.doc_document
    data = random.Random(int(size)).randbytes(int(size))
    name = table.file.store(io.BytesIO(data), filename="alert.bin")
    document_id = table.insert(name="Alert attachment", file=name)
    folder = table.file.retrieve_file_properties(name)["path"]
    return dict(
        document_id=document_id,
        path=os.path.join(folder, name),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def main(command, *args):
    out = {}
    if command == "pe_id":
        out["pe_id"] = _pe_id(args[0])
    elif command == "send_by_pe_id":
        documents = [int(args[2])] if len(args) > 2 else None
        message_id = msg.send_by_pe_id(
            int(args[0]), args[1], "Sent by pe_id.", document_ids=documents
        )
        db.commit()
        out["returned"] = "%.3f" % time.time()  # for bench/eden.py
        out["message_id"] = message_id
        out["eden_outbox"] = ",".join(str(i) for i in _eden_outbox_ids(message_id))
    elif command == "process_outbox":
        msg.process_outbox("EMAIL")
    elif command == "timed_alert":
        s3task.run_async = lambda *a, **k: None  # no worker: it would run process_outbox here
        out["message_id"] = msg.send_by_pe_id(
            int(args[0]), args[1], "Sent by pe_id.", document_ids=[int(args[2])]
        )
        db.commit()
        started = time.perf_counter()
        msg.process_outbox("EMAIL")
        db.commit()
        out["seconds"] = "%.3f" % (time.perf_counter() - started)
    elif command == "document":
        out.update(_document(args[0]))
    elif command == "send_email":
        import os
        import tempfile

        path = os.path.join(tempfile.mkdtemp(), "report.txt")
        with open(path, "w") as f:
            f.write("attached")
        out["ok"] = msg.send_email(
            args[0],
            args[1],
            "Grüße from Eden",
            cc=args[2],
            bcc=args[3],
            attachments=[mail.Attachment(path)],
        )
    elif command == "mail_send":
        out["ok"] = mail.send(
            pe_id=int(args[0]), subject=args[1], message="Sent by mail.send(pe_id=...)."
        )
        out["error"] = mail.error
        out["ids"] = ",".join(str(i) for i in mail.result.get("ids", []))
    elif command == "eden_status":
        table = s3db.msg_outbox
        out["status"] = db(table.id == int(args[0])).select(table.status).first().status
    elif command == "person":
        out["pe_id"] = _person(args[0])
    elif command == "contact":
        out["contact"] = s3db.pr_contact.insert(
            pe_id=int(args[0]), value=args[1], contact_method="EMAIL"
        )
        ptable = s3db.pr_person
        out["person_id"] = db(ptable.pe_id == int(args[0])).select(ptable.id).first().id
    elif command == "organisation":
        out["pe_id"] = _organisation(*args)
    elif command == "settings":
        from s3outbox.delivery.check import findings

        for key in (
            "server",
            "sender",
            "login",
            "tls",
            "rate_limit",
            "pipelining",
            "batch_size",
            "timeout",
        ):
            out[key] = mail.settings[key]
        out["public_url"] = mail.settings.public_url
        out["findings"] = "|".join(f["key"] for f in findings(mail.settings))
    elif command == "group":
        out["pe_id"] = _group(*args)
    elif command == "volunteers":
        out["pe_id"] = _volunteers(*args)
    elif command == "process_outbox_loop":
        _process_outbox_loop(*args)
    elif command == "bad_send":  # wrongly typed pe_id, unknown argument
        for name, kwargs in (
            ("true", dict(pe_id=True)),
            ("float", dict(pe_id=1.5)),
            ("text", dict(pe_id="x")),
            ("bogus", dict(bogus=1)),
        ):
            try:
                ok = mail.send(
                    to=None if "pe_id" in kwargs else "a@people.net",
                    subject="Bad",
                    message="Bad",
                    **kwargs,
                )
            except Exception as e:  # the test fails on it
                ok = "raised %s" % type(e).__name__
            out[name] = "%s %s" % (ok, mail.error)
    db.commit()
    for key, value in out.items():
        print("%s=%s" % (key, value))
    print("s3outbox-shell-ok")


main(*sys.argv[1:])
