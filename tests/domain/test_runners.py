"""The choice of runner, from an operation's history (pgrunbook.domain.runners)."""

from __future__ import annotations

import pytest

from pgrunbook.domain.runners import LAMBDA_DISK_BYTES, Choice, LastRun, choose

GIB = 1024**3


def report(**changes) -> dict:
    base = {
        "status": "ok",
        "runner": {"runner": "lambda", "why": "...", "cpus": 2},
        "figures": {"duration_s": 120.0, "peak_disk_bytes": 2 * GIB},
        "findings": [],
        "detail": {"state": "finished"},
    }
    return {**base, **changes}


def last(**changes) -> LastRun:
    return LastRun.from_report(report(**changes))


@pytest.mark.parametrize("mode", ["lambda", "fargate"])
def test_a_configured_runner_is_taken_as_it_is(mode):
    assert choose(mode, last(figures={"duration_s": 890.0})) == Choice(mode, f"configured: runner {mode}")


def test_without_history_the_first_run_goes_where_any_size_fits():
    choice = choose("auto", None)
    assert choice.runner == "fargate" and "no earlier run" in choice.why


def test_a_small_quick_database_stays_on_lambda():
    choice = choose("auto", last())
    assert choice.runner == "lambda"
    assert "2.0 min of Lambda's 15.0 min" in choice.why and "2.0 GiB of its 10.0 GiB" in choice.why


@pytest.mark.parametrize(
    ("figures", "said"),
    [
        ({"duration_s": 0.61 * 900, "peak_disk_bytes": GIB}, "9.2 min of Lambda's 15.0 min"),
        ({"duration_s": 60.0, "peak_disk_bytes": int(0.61 * LAMBDA_DISK_BYTES)}, "6.1 GiB of its 10.0 GiB"),
        ({"duration_s": 60.0, "disk_needed_bytes": 7 * GIB}, "7.0 GiB"),  # a restore's need
    ],
)
def test_over_sixty_percent_of_a_lambda_limit_moves_to_fargate(figures, said):
    choice = choose("auto", last(figures=figures))
    assert choice.runner == "fargate" and said in choice.why and "over 60%" in choice.why


def test_a_lambda_run_that_never_finished_timed_out_and_moves_to_fargate():
    running = last(detail={"state": "running"}, status="critical", figures={})
    choice = choose("auto", running)
    assert choice.runner == "fargate" and "never finished" in choice.why


@pytest.mark.parametrize(
    "finding",
    [
        {
            "message": "backup stopped: pg_dump: error: could not write: No space left on device",
            "details": {},
        },
        {"message": "restore-test stopped", "details": {"error": "DiskTooSmall"}},
    ],
)
def test_a_run_that_ran_out_of_disk_moves_to_fargate(finding):
    choice = choose("auto", last(findings=[finding], status="critical"))
    assert choice.runner == "fargate" and "ran out of local disk" in choice.why


def test_what_a_restore_will_need_decides_before_any_history():
    choice = choose("auto", None, disk_needed=8 * GIB)
    assert choice.runner == "fargate" and "needs 8.0 GiB of local disk" in choice.why
    assert choose("auto", last(), disk_needed=1 * GIB).runner == "lambda"


def test_a_duration_measured_on_more_cpus_counts_as_it_would_on_lambda():
    """8 vCPUs finished in 3 min: on the function's 2 that is 12 min, over the line."""
    on_fargate = last(runner={"runner": "fargate", "cpus": 8}, figures={"duration_s": 180.0})
    choice = choose("auto", on_fargate)
    assert choice.runner == "fargate" and "as 12.0 min on Lambda's 2 CPUs" in choice.why


def test_between_the_two_lines_a_database_stays_where_it_is():
    """45 % of Lambda's time: on Lambda it stays there, on Fargate it stays there (no flapping)."""
    figures = {"duration_s": 0.45 * 900, "peak_disk_bytes": GIB}
    assert choose("auto", last(figures=figures)).runner == "lambda"
    on_fargate = last(runner={"runner": "fargate", "cpus": 2}, figures=figures)
    assert choose("auto", on_fargate).runner == "fargate"
    figures["duration_s"] = 0.3 * 900
    back = choose("auto", last(runner={"runner": "fargate", "cpus": 2}, figures=figures))
    assert back.runner == "lambda" and "well within" in back.why


def test_the_functions_own_limits_are_used():
    """A function deployed with 5 minutes: 4 minutes is over 60 % of it."""
    assert choose("auto", last(figures={"duration_s": 240.0}), seconds=300).runner == "fargate"


def test_a_report_that_measured_nothing_is_no_evidence_for_lambda():
    assert choose("auto", last(figures={})).runner == "fargate"


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="runner must be one of"):
        choose("sometimes", None)


def test_a_choice_round_trips_and_rejects_what_is_not_one():
    choice = Choice("fargate", "why not")
    assert Choice.from_dict(choice.to_dict()) == choice
    assert Choice.from_dict({"runner": "ec2"}) is None and Choice.from_dict("fargate") is None
