"""Database, Auth and the outbox mailer. Settings: private/appconfig.ini."""

import configparser
import os

from gluon import current
from gluon.contrib.appconfig import AppConfigDict

from s3outbox import PRIORITY_HIGH, MailS3
from s3outbox.accounts.auth import OutboxAuth, as_list
from s3outbox.accounts.requestcheck import FRAME_HEADERS, check_body, check_request
from s3outbox.delivery.database import AdoptingMigrator, shared_uri
from s3outbox.delivery.settings import apply_config


def load_appconfig():
    """private/appconfig.ini as gluon's AppConfig reads it (its ``get``), but
    as UTF-8, and with a '%' not written '%%' taken as written: web2py's
    server runs in the C locale, where AppConfig read the file as ASCII, so an
    accent anywhere in it (a sender's name) gave every page a ticket, and so
    did a lone '%' (in a password, say)."""
    parser = configparser.ConfigParser()
    with open(
        os.path.join(request.folder, "private", "appconfig.ini"),
        encoding="utf-8",
        errors="replace",
    ) as f:
        parser.read_file(f)
    settings = {}
    for section in parser.sections():
        settings[section] = {}
        for option in parser.options(section):
            try:
                settings[section][option] = parser.get(section, option)
            except configparser.InterpolationError:
                settings[section][option] = parser.get(section, option, raw=True)
    return AppConfigDict(settings)


configuration = load_appconfig()

# Every page: no framing; a body too large or with too many fields is
# refused before web2py parses it (413), a file in a form field, a form value
# with a NUL or a duplicated field (the dashboard's "ids" checkboxes are the
# one repeated field) get a 400. Nothing before this reads the form.
response.headers.update(FRAME_HEADERS)
check_body(request)
check_request(request, multi=("ids",))

# Tables another host created are adopted, not created again; the URI and
# decode_credentials are as the scheduler's own connection opens them (see
# s3outbox/delivery/database.py).
DB_URI = shared_uri(configuration.get("db.uri") or "sqlite://storage.sqlite")
DB_ARGS = dict(
    migrate_enabled=configuration.get("db.migrate") is not False,
    check_reserved=["all"],
    decode_credentials=True,
    adapter_args=dict(migrator=AdoptingMigrator),
)
if DB_URI.startswith("sqlite"):
    # The web server and the scheduler worker share the file: wait for locks
    # (30 s) rather than fail, and let readers run beside the writer (WAL).
    db = DAL(DB_URI, driver_args={"timeout": 30}, **DB_ARGS)
    db.executesql("PRAGMA journal_mode=WAL")
else:
    db = DAL(DB_URI, pool_size=configuration.get("db.pool_size") or 5, **DB_ARGS)

response.generic_patterns = []
response.title = configuration.get("app.name") or "Outbox"

# The outbox mailer: send() queues; the scheduler worker delivers.
mail = MailS3(db)
apply_config(mail, configuration.get)
current.mail = mail

# Auth whose flows queue through the outbox (see s3outbox/accounts/auth.py).
auth = OutboxAuth(
    db,
    mailer=mail,
    host_names=as_list(configuration.get("host.names")) or None,
    public_url=configuration.get("app.public_url"),
)
auth.settings.extra_fields["auth_user"] = []
auth.define_tables(username=bool(configuration.get("auth.use_username")), signature=False)
auth.settings.registration_requires_verification = (
    configuration.get("auth.registration_requires_verification") is not False
)
auth.settings.registration_requires_approval = bool(
    configuration.get("auth.registration_requires_approval")
)
auth.settings.reset_password_requires_verification = True
auth.configure_outbox(configuration.get)
