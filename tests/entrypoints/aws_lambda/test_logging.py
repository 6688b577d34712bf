"""The Lambda handlers' logging: one JSON line per record on the current stdout, and no key
left over from an earlier invocation of the same warm container."""

from __future__ import annotations

import io
import json
import sys

import pytest

from pgrunbook.entrypoints.aws_lambda import _observed
from tests.lambda_env import Context


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if '"level"' in line]


@pytest.fixture(autouse=True)
def powertools(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "pgrunbook")


def logging_handler():
    """A handler whose first invocation appends keys and whose every invocation logs once."""

    def run(event, context, *, logger, metrics):
        if event.get("append"):
            logger.append_keys(phase="fail", run_id="r-1")
        logger.info(event["say"])
        return {}

    return _observed(run)


def test_keys_appended_by_one_invocation_do_not_reach_the_next(capsys):
    handler = logging_handler()
    handler({"append": True, "say": "first"}, Context())
    handler({"say": "second"}, Context())

    first, second = [
        line for line in json_lines(capsys.readouterr().out) if line["message"] in ("first", "second")
    ]
    assert (first["phase"], first["run_id"]) == ("fail", "r-1")
    assert "phase" not in second and "run_id" not in second
    assert second["function_request_id"] == Context.aws_request_id  # the context is still injected


def test_log_lines_go_to_the_stdout_of_the_moment_not_the_first_handlers(capsys, monkeypatch):
    logging_handler()({"say": "before"}, Context())
    later = io.StringIO()
    monkeypatch.setattr(sys, "stdout", later)

    logging_handler()({"say": "after"}, Context())  # a second handler, as another function's

    monkeypatch.undo()
    assert [line["message"] for line in json_lines(capsys.readouterr().out)] == ["before"]
    assert [line["message"] for line in json_lines(later.getvalue())] == ["after"]
