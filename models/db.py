"""Database, Auth and the outbox mailer. Settings: private/appconfig.ini."""

import logging
import os

from gluon import current
from gluon.contrib.appconfig import AppConfigDict

from s3outbox import PRIORITY_HIGH, MailS3
from s3outbox.accounts.auth import OutboxAuth, as_list
from s3outbox.accounts.requestcheck import FRAME_HEADERS, check_body, check_request
from s3outbox.delivery import appconfig
from s3outbox.delivery.database import AdoptingMigrator, shared_uri
from s3outbox.delivery.settings import apply_config, boolean, whole

CONFIG_FILE = "private/appconfig.ini"
response.outbox_findings = []  # settings the models read, named on the dashboard


def config_problem(key, problem, log_only=False):
    """Name a setting that cannot be used: on the dashboard (unless
    ``log_only``: the worker has no page) and in the log, once a process."""
    where = "%s in %s" % (key, CONFIG_FILE)
    if not log_only:
        response.outbox_findings.append(
            dict(key=key, file=CONFIG_FILE, blocking=False, where=where, problem=problem)
        )
    cache.ram(
        "s3outbox-config-%s-%s" % (key, problem),
        lambda: (
            logging.getLogger("s3outbox").error("mail settings: %s (edit %s)", problem, where)
            or True
        ),
        time_expire=None,
    )


def load_appconfig(log_only=False):
    """private/appconfig.ini as gluon's AppConfig reads it (its ``get``), but
    with no line able to give every page a ticket (s3outbox/delivery/appconfig.py):
    each problem named. Without [db] uri the database is not guessed: every
    page says why (503), and no mail is taken."""
    settings, named = appconfig.read(os.path.join(request.folder, CONFIG_FILE))
    for key, text in named:
        config_problem(key, text, log_only)
    if named and not (settings.get("db") or {}).get("uri"):
        raise HTTP(
            503,
            "The site's settings cannot be used: %s has %s. [db] uri is not read, so no "
            "database is opened and no mail is taken. Fix the file; it is read again on "
            "the next request.\n" % (CONFIG_FILE, "; ".join("%s: %s" % kt for kt in named)),
        )
    return AppConfigDict(settings)


configuration = load_appconfig()


def config_value(key, reader, default, bad=None, then=None):
    """``[section] key`` as ``reader`` reads it (s3outbox/delivery/appconfig.py's
    ``value``); a value it cannot read is named."""
    used, problem = appconfig.value(configuration, key, reader, default, bad, then)
    if problem:
        config_problem(*problem)
    return used


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
    migrate_enabled=config_value("db.migrate", boolean, True),
    check_reserved=["all"],
    decode_credentials=True,
    adapter_args=dict(migrator=AdoptingMigrator),
)


def open_db():
    """The site's database; one that cannot be opened (a URI that names no
    database, a server down) is a 503 page naming [db] uri, not a ticket:
    no mail is taken meanwhile, and what is queued waits in the database."""
    try:
        if DB_URI.startswith("sqlite"):
            # The web server and the scheduler worker share the file: wait for
            # locks (30 s) rather than fail; readers run beside the writer (WAL).
            opened = DAL(DB_URI, driver_args={"timeout": 30}, **DB_ARGS)
            opened.executesql("PRAGMA journal_mode=WAL")
            return opened
        # Before, pool_size = abc gave every page on PostgreSQL a ticket (pydal
        # compares it as a number as each request gives its connection back).
        pool_size = config_value("db.pool_size", whole(0, 1000), 5)
        return DAL(DB_URI, pool_size=pool_size, **DB_ARGS)
    except Exception as e:  # noqa: BLE001 (whatever the driver raises; its text may hold the password)
        problem = "the database it names cannot be opened (%s)" % type(e).__name__
        config_problem("[db] uri", problem, log_only=True)
        raise HTTP(
            503,
            "The site's settings cannot be used: [db] uri in %s: %s. No mail is taken "
            "meanwhile; mail already queued waits in the database. Fix it; the file is "
            "read again on the next request.\n" % (CONFIG_FILE, problem),
        ) from None


db = open_db()

response.generic_patterns = []
# As written: AppConfig's get made "Outbox, Inc." a map (the title and the
# test mail's subject showed "<map object at 0x...>") and "1e3" a number.
APP_NAME = str((dict.get(configuration, "app") or {}).get("name") or "").strip()
response.title = APP_NAME or "Outbox"

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
auth.define_tables(username=config_value("auth.use_username", boolean, False), signature=False)
# A security setting that cannot be read takes its safe reading, named
# (before, any text but "false" turned each of these on, "no" included).
auth.settings.registration_requires_verification = config_value(
    "auth.registration_requires_verification", boolean, True
)
auth.settings.registration_requires_approval = config_value(
    "auth.registration_requires_approval",
    boolean,
    False,
    bad=True,
    then="true is used (new accounts wait for approval)",
)
TWO_FACTOR = config_value(
    "auth.two_factor", boolean, False, bad=True, then="true is used (a code at each login)"
)
auth.settings.reset_password_requires_verification = True
auth.configure_outbox(
    lambda key: TWO_FACTOR if key == "auth.two_factor" else configuration.get(key)
)
