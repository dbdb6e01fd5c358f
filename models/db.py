"""Database, Auth and the outbox mailer. Settings: private/appconfig.ini."""

import configparser
import logging
import os

from gluon import current
from gluon.contrib.appconfig import AppConfigDict

from s3outbox import PRIORITY_HIGH, MailS3
from s3outbox.accounts.auth import OutboxAuth, as_list
from s3outbox.accounts.requestcheck import FRAME_HEADERS, check_body, check_request
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


def _ini_lines():
    """The lines of private/appconfig.ini, and why it cannot be read, or None."""
    try:
        with open(
            os.path.join(request.folder, "private", "appconfig.ini"),
            encoding="utf-8",
            errors="replace",
        ) as f:
            return f.read().splitlines(keepends=True), None
    except OSError as e:
        return [], "the file cannot be read (%s)" % (e.strerror or type(e).__name__)


def _ini_problems(lines):
    """[(line number, what is wrong, the line is left out)]: a line that is
    not ``key = value`` or before the first [section] is left out; of a key
    given twice, the last is used; a [section] given again joins the first."""
    probe, found = list(lines), []
    for _ in range(200):  # one problem a reading; a file is not that broken
        try:
            configparser.ConfigParser(strict=False).read_string("".join(probe))
            break
        except configparser.MissingSectionHeaderError as e:
            bad = [e.lineno]
            what = "a line before the first [section]: it is ignored"
        except configparser.ParsingError as e:
            bad = [n for n, _ in e.errors]
            what = "not key = value, [section] or a ; comment: it is ignored"
        found += [(n, what, True) for n in bad]
        for n in bad:
            probe[n - 1] = "\n"
    return found + _repeats(probe)


def _repeats(lines):
    """[(line number, what is wrong, False)] of each [section] or key given
    again (a strict reading refuses them; the last is used, as written)."""
    parser, section, seen, found = configparser.ConfigParser(), None, {}, []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or line[:1].isspace() or text[:1] in "#;":
            continue
        head, option = parser.SECTCRE.match(text), parser.OPTCRE.match(text)
        if head:
            section = head.group("header")
            key, what = (section, None), "[%s] again: its keys join the first" % section
        elif option and section is not None:
            name = parser.optionxform(option.group("option").strip())
            key = (section, name)
            what = "%s again in [%s]: this last value is used" % key[::-1]
        else:
            continue
        if key in seen:
            found.append((n, "%s (line %d before)" % (what, seen[key]), False))
        seen[key] = n
    return found


def load_appconfig(log_only=False):
    """private/appconfig.ini as gluon's AppConfig reads it (its ``get``), but
    as UTF-8, with a '%' not written '%%' taken as written (web2py's server
    runs in the C locale: an accent or a lone '%' gave every page a ticket),
    and a line that cannot be read named and left out (before, one such line
    or a key written twice gave every page a ticket). Without [db] uri the
    database is not guessed: every page says why (503), and no mail is taken."""
    lines, unreadable = _ini_lines()
    problems = _ini_problems(lines)
    for n, _, left_out in problems:
        if left_out:
            lines[n - 1] = "\n"
    parser = configparser.ConfigParser(strict=False)
    try:
        parser.read_string("".join(lines))
    except configparser.Error as e:  # more problems than _ini_problems reads
        parser, unreadable = (
            configparser.ConfigParser(),
            "it cannot be read (%s)" % type(e).__name__,
        )
    settings = {}
    for section in parser.sections():
        settings[section] = {}
        for option in parser.options(section):
            try:
                settings[section][option] = parser.get(section, option)
            except configparser.InterpolationError:
                settings[section][option] = parser.get(section, option, raw=True)
    named = [("line %d" % n, text) for n, text, _ in problems]
    named += [("the whole file", unreadable)] if unreadable else []
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
    """``[section] key`` as ``reader`` (delivery.settings') reads its text;
    empty: ``default``; a value it cannot read is named and ``bad`` (else
    ``default``) used, ``then`` saying what that means."""
    section, _, name = key.partition(".")
    text = str((dict.get(configuration, section) or {}).get(name, "")).strip()
    if not text:
        return default
    try:
        return reader(text)
    except ValueError:
        used = default if bad is None else bad
        config_problem(
            "[%s] %s" % (section, name),
            "%s = %s cannot be used: expected %s; %s"
            % (name, text[:40], reader.expected, then or "%s is used" % str(used).lower()),
        )
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
