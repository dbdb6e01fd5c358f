"""delivery/appconfig.py: private/appconfig.ini read line by line, each
problem named by its line and never by its text."""

from s3outbox.delivery import appconfig
from s3outbox.delivery.settings import boolean, whole


def test_bad_lines_and_repeats_are_named_and_the_rest_read(tmp_path):
    path = tmp_path / "appconfig.ini"
    path.write_text(
        "stray = before any section\n"
        "[smtp]\n"
        "sender = Société <a@b.c>\n"
        "login = user:pa%ss\n"
        "this line is broken\n"
        "[app]\n"
        "name = Outbox, Inc.\n"
        "name = Outbox Two\n",
        encoding="utf-8",
    )
    settings, problems = appconfig.read(str(path))
    assert settings["smtp"] == {"sender": "Société <a@b.c>", "login": "user:pa%ss"}
    assert settings["app"] == {"name": "Outbox Two"}
    assert [where for where, _ in problems] == ["line 1", "line 5", "line 8"]
    assert "before the first [section]" in problems[0][1]
    assert "(line 7 before)" in problems[2][1]
    assert not any("broken" in text or "pa%ss" in text for _, text in problems)


def test_a_file_that_cannot_be_read_is_named(tmp_path):
    settings, problems = appconfig.read(str(tmp_path))  # a folder
    assert settings == {} and problems[0][0] == "the whole file"


def test_a_value_is_read_or_named_with_what_is_used():
    settings = {"db": {"pool_size": "abc", "migrate": "no"}}
    assert appconfig.value(settings, "db.migrate", boolean, True) == (False, None)
    assert appconfig.value(settings, "db.missing", boolean, True) == (True, None)
    used, problem = appconfig.value(settings, "db.pool_size", whole(0, 1000), 5)
    assert used == 5
    assert problem == (
        "[db] pool_size",
        "pool_size = abc cannot be used: expected a whole number from 0 to 1000; 5 is used",
    )
    used, problem = appconfig.value(settings, "db.pool_size", whole(0, 9), 5, bad=0, then="so")
    assert used == 0 and problem[1].endswith("; so")
