"""Where a deployed operation runs: in Lambda, or as an ECS Fargate task.

Lambda starts in a second and costs nothing idle, but a run must end within 15 minutes and
fit in 10 GiB of ``/tmp``.  Fargate fits any size pgrunbook handles (up to 16 vCPU, 120 GiB of
memory and 200 GiB of ephemeral storage) and takes a minute to start.  Per database and per
operation, cdk.json says ``lambda``, ``fargate`` or ``auto``; ``auto`` is decided here, before
each run, from the database's history (the operation's last report, and for a restore the
last backup's size):

* no history: Fargate (nothing says the run fits Lambda; a wrong guess would cost a missed
  backup, and the next run is sized from this one's figures);
* the last run on Lambda did not finish (it timed out: its report is still ``running``), ran
  out of space, or was refused for lack of disk: Fargate;
* the last run took more than :data:`UP` of Lambda's time, or needs more than :data:`UP` of
  its disk: Fargate;
* back to Lambda only when it is under :data:`DOWN` of both (a gap between the two
  thresholds keeps a database near the line from flapping between runners);
* otherwise Lambda.

The choice and its reason go into the run's report (``runner``), so that the report says
which runner ran and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RUNNERS = ("lambda", "fargate")
MODES = ("auto", *RUNNERS)

LAMBDA_SECONDS = 900.0  # Lambda's longest invocation
LAMBDA_DISK_BYTES = 10240 * 1024 * 1024  # Lambda's largest /tmp
LAMBDA_CPUS = 2  # what a 3008 MB function gets
UP = 0.6  # over this share of a Lambda limit, move to Fargate
DOWN = 0.4  # under this share of both, a database on Fargate moves back to Lambda

OUT_OF_SPACE = ("No space left on device", "ENOSPC", "DiskTooSmall")


@dataclass(frozen=True)
class Choice:
    runner: str  # lambda | fargate
    why: str  # one line, for the report and the execution's history

    def to_dict(self) -> dict[str, str]:
        return {"runner": self.runner, "why": self.why}

    @classmethod
    def from_dict(cls, data: Any) -> Choice | None:
        if not isinstance(data, dict) or data.get("runner") not in RUNNERS:
            return None
        return cls(str(data["runner"]), str(data.get("why") or ""))


@dataclass(frozen=True)
class LastRun:
    """What the choice reads from an operation's last stored report."""

    runner: str | None  # where it ran (None: before runners were recorded, or the CLI)
    status: str  # the report's status; "running" when it never finished
    duration_s: float | None
    disk_bytes: int | None  # the local disk it used (a backup's peak) or needed (a restore)
    out_of_space: bool = False
    cpus: int | None = None  # the CPUs it ran on (a Fargate task has more than a function)

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> LastRun:
        figures = report.get("figures") or {}
        runner = (report.get("runner") or {}).get("runner")
        messages = " ".join(
            f"{f.get('message', '')} {(f.get('details') or {}).get('error', '')}"
            for f in report.get("findings") or []
        )
        disk = figures.get("peak_disk_bytes") or figures.get("disk_needed_bytes")
        state = (report.get("detail") or {}).get("state")
        return cls(
            runner=runner,
            status="running" if state == "running" else str(report.get("status") or ""),
            duration_s=_number(figures.get("duration_s")),
            disk_bytes=int(disk) if isinstance(disk, int | float) else None,
            out_of_space=any(marker in messages for marker in OUT_OF_SPACE),
            cpus=(report.get("runner") or {}).get("cpus"),
        )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def choose(
    mode: str,
    last: LastRun | None,
    *,
    disk_needed: int | None = None,
    seconds: float = LAMBDA_SECONDS,
    disk: int = LAMBDA_DISK_BYTES,
    cpus: int = LAMBDA_CPUS,
) -> Choice:
    """The runner for the next run (see the module's docstring).  ``disk_needed``: what the
    run will need, when it is known before it starts (a restore: from the backup's manifest);
    ``seconds``, ``disk`` and ``cpus``: the Lambda function's own timeout, ``/tmp`` and CPUs.
    A duration measured on more CPUs than the function has is scaled up by the ratio (the
    dump, restore and fingerprints run one stream per CPU), so a run Fargate finished fast is
    not sent back to a Lambda function that would take twice as long."""
    if mode not in MODES:
        raise ValueError(f"runner must be one of {', '.join(MODES)}, not {mode!r}")
    if mode != "auto":
        return Choice(mode, f"configured: runner {mode}")
    if disk_needed is not None and disk_needed > UP * disk:
        return Choice(
            "fargate",
            f"needs {gib(disk_needed)} of local disk; Lambda has {gib(disk)} ({UP:.0%} is the line)",
        )
    if last is None:
        return Choice(
            "fargate", "no earlier run to size it by: Fargate fits any size, and this run sizes the next"
        )
    where = f"the last run (on {last.runner})" if last.runner else "the last run"
    if last.runner == "lambda" and last.status == "running":
        return Choice(
            "fargate", f"{where} never finished: Lambda's {minutes(seconds)} ran out, or it was killed"
        )
    if last.out_of_space:
        return Choice("fargate", f"{where} ran out of local disk")
    if last.duration_s is None and last.disk_bytes is None:
        return Choice("fargate", f"{where} measured neither its duration nor its disk: Fargate fits any size")
    duration = last.duration_s or 0.0
    scaled = ""
    if last.cpus and last.cpus > cpus:
        duration *= last.cpus / cpus
        scaled = f" (as {minutes(duration)} on Lambda's {cpus} CPUs)"
    share_time = duration / seconds
    share_disk = max(last.disk_bytes or 0, disk_needed or 0) / disk
    measured = (
        f"{minutes(last.duration_s or 0.0)}{scaled} of Lambda's {minutes(seconds)}, "
        f"{gib(max(last.disk_bytes or 0, disk_needed or 0))} of its {gib(disk)} disk"
    )
    if share_time > UP or share_disk > UP:
        return Choice("fargate", f"{where} took {measured}: over {UP:.0%} of a Lambda limit")
    if last.runner == "fargate" and (share_time > DOWN or share_disk > DOWN):
        return Choice("fargate", f"{where} took {measured}: not yet under {DOWN:.0%} of Lambda's limits")
    return Choice("lambda", f"{where} took {measured}: well within Lambda's limits")
