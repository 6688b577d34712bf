"""The pgrunbook command: bad usage and bad configuration are one line on stderr, exit 2.

Every case here fails before any database, bucket or subprocess is touched.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator

import pytest

from pgrunbook.entrypoints.cli import main

PASSWORD = "Cli-pw-3b9f04"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No PGRUNBOOK_* or AWS region from the caller; root logger restored afterwards."""
    for key in list(os.environ):
        if key.startswith("PGRUNBOOK_") or key in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            monkeypatch.delenv(key)
    root = logging.getLogger()
    handlers = list(root.handlers)
    filters = {h: list(h.filters) for h in handlers}
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler, saved in filters.items():
        handler.filters[:] = saved


def one_line(text: str) -> str:
    assert text.endswith("\n"), repr(text)
    assert text.count("\n") == 1, repr(text)
    return text.rstrip("\n")


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        (["backup", "--jobs", "x"], "--jobs"),
        (["backup", "--compression", "high"], "--compression"),
        (["frobnicate"], "frobnicate"),
        ([], "COMMAND"),
        (["backup", "--no-such-flag"], "--no-such-flag"),
        (["status", "--tier", "daily"], "--tier"),
    ],
)
def test_usage_errors_exit_2_with_one_line_on_stderr(capsys, argv, mentions):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    out, err = capsys.readouterr()
    line = one_line(err)
    assert line.startswith("pgrunbook: error: ")
    assert mentions in line
    assert out == ""


def test_usage_error_points_at_the_subcommand_help(capsys):
    with pytest.raises(SystemExit):
        main(["backup", "--jobs", "x"])
    assert one_line(capsys.readouterr().err).endswith("(see pgrunbook backup --help)")


def test_unknown_command_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["frobnicate"])
    assert caught.value.code == 2
    line = one_line(capsys.readouterr().err)
    for command in ("backup", "restore-test", "status", "demo"):
        assert command in line


def test_version_prints_and_exits_0(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("pgrunbook ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["backup", "--jobs", "0"], "jobs must be between 1 and 64, not 0"),
        (["backup", "--compression", "12"], "compression must be a gzip level"),
        (["backup", "--profile", "rds"], "unknown profile 'rds'"),
        (["backup", "--mirror", "maybe"], "mirror must be one of"),
        (["status", "--bucket", "Not_A_Bucket"], "is not a valid S3 bucket name"),
        (["status", "--region", "mars-1"], "is not an AWS region name"),
        (["status", "--limit", "0"], "--limit must be at least 1"),
        (["demo", "--tasks", "0"], "--tasks must be at least 1"),
        # an operation's own options are checked as a Lambda event's are: the same refusal
        (["restore-test", "--from", "tertiary"], "source (--from) must be one of primary, dr"),
        (["status", "--limit", "many"], "--limit must be an integer, not 'many'"),
        (["restore-test", "--prefer-tier", "nonsense"], "--prefer-tier must be one of"),
        (["restore-test", "--backup-id", ""], "--backup-id '' is not a pgrunbook backup id"),
        (["backup", "--tier", ""], "--tier must name at least one tier"),
    ],
)
def test_configuration_errors_return_2_with_one_line_on_stderr(capsys, argv, message):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    line = one_line(err)
    assert line.startswith("pgrunbook: ")
    assert message in line
    assert out == ""


def test_bad_database_url_never_shows_the_password(capsys):
    url = f"postgresql://alice:{PASSWORD}@db.example.com/app?bogus=1"
    assert main(["backup", "--database-url", url]) == 2
    out, err = capsys.readouterr()
    assert one_line(err) == "pgrunbook: database URL has an unsupported parameter 'bogus'"
    assert PASSWORD not in out + err


def test_configuration_error_with_json_also_reports_on_stdout(capsys):
    url = f"postgresql://alice:{PASSWORD}@db.example.com:99999/app"
    assert main(["status", "--json", "--database-url", url]) == 2
    out, err = capsys.readouterr()
    one_line(err)
    report = json.loads(out)
    assert report["status"] == "refused" and report["operation"] == "status"
    assert report["exit_code"] == 2
    assert "database URL is malformed" in report["refused"]
    assert PASSWORD not in out + err


def test_environment_configuration_errors_are_reported_the_same_way(capsys, monkeypatch):
    monkeypatch.setenv("PGRUNBOOK_JOBS", "lots")
    assert main(["backup"]) == 2
    assert one_line(capsys.readouterr().err) == "pgrunbook: PGRUNBOOK_JOBS must be an integer, not 'lots'"
