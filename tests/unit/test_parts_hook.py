"""The core's one hook (delivery.settings.register): accounts and bounces
join it on import, registering again changes nothing, and a part's
defaults, readers, configuration, check and tables reach the core."""

import pytest
from gluon.storage import Storage
from pydal import DAL

from s3outbox import MailS3
from s3outbox.accounts import settings as account_settings
from s3outbox.bounces import settings as bounce_settings
from s3outbox.delivery import settings, store
from s3outbox.delivery.settings import (
    DEFAULTS,
    Part,
    apply_config,
    outbox_keys,
    part_findings,
    parts,
    read_value,
    register,
    whole,
)


@pytest.fixture
def restored():
    """The registries as they were before the test."""
    kept = [
        (d, dict(d)) for d in (DEFAULTS, settings._READERS, settings._PARTS, store._PART_TABLES)
    ]
    yield
    for registry, copy in kept:
        registry.clear()
        registry.update(copy)
    settings._read_cached.cache_clear()


def test_accounts_and_bounces_are_joined_once_in_name_order(restored):
    assert [p.name for p in parts()] == ["accounts", "bounces"]
    before = (dict(DEFAULTS), outbox_keys())
    register(parts()[1])  # bounces again, then accounts: as a re-import would
    register(parts()[0])
    assert [p.name for p in parts()] == ["accounts", "bounces"]
    assert (dict(DEFAULTS), outbox_keys()) == before
    assert set(account_settings.READERS) < set(outbox_keys())
    assert "bounce_mailbox" in outbox_keys() and "flow_window" in DEFAULTS


def test_flow_and_bounce_keys_are_on_a_mailers_locked_settings(tmp_path):
    mail = MailS3(DAL("sqlite://x.sqlite", folder=str(tmp_path)), tablename="tob_hook")
    for key in list(account_settings.DEFAULTS) + list(bounce_settings.DEFAULTS):
        assert key in mail.settings
    apply_config(mail, {"outbox.flow_window": "60", "outbox.bounce_interval": "soon"}.get)
    assert mail.settings.flow_window == 60 and mail.settings.bounce_interval == 300
    keys = [key for key, _, _ in part_findings(mail.settings)]
    assert keys == ["[outbox] bounce_interval"]
    assert {"tob_hook_flowmail", "tob_hook_flowlimit"} <= set(mail.db.tables)


def test_a_part_reaches_settings_check_and_tables(restored, tmp_path):
    def define(s, migrate):
        s.db.define_table(s.tablename + "_extra", migrate=migrate)

    def apply(s, get):
        s.extra_limit, problem = settings.read_raw("extra_limit", get("outbox.extra_limit"))
        s.extra_errors = [problem] if problem else []

    register(
        Part(
            name="extra",
            defaults=dict(extra_limit=5, extra_errors=()),
            readers=dict(extra_limit=(whole(1, 9), 5, False)),
            keys=("extra_limit",),
            apply=apply,
            findings=lambda s: [p.finding() for p in s.extra_errors],
            tables=define,
        )
    )
    assert [p.name for p in parts()] == ["accounts", "bounces", "extra"]
    assert outbox_keys()[-1] == "extra_limit"
    mail = MailS3(DAL("sqlite://x.sqlite", folder=str(tmp_path)), tablename="tob_extra")
    assert "tob_extra_extra" in mail.db.tables
    apply_config(mail, {"outbox.extra_limit": "12"}.get)
    assert mail.settings.extra_limit == 5
    found = part_findings(mail.settings)[-1]
    assert found[0] == "[outbox] extra_limit" and "a whole number from 1 to 9" in found[1]
    assert read_value(Storage(extra_limit="7"), "extra_limit") == (7, None)
