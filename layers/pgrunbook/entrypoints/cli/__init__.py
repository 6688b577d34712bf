"""The ``pgrunbook`` command.

Exit status: 0 all good, 1 a check failed or a job found a problem, 2 bad input or
configuration (one line on stderr saying why; nothing was changed).  Every command prints a
readable report on stdout, or JSON with ``--json``; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from pgrunbook import __version__
from pgrunbook.domain.errors import ConfigError, PgRunbookError
from pgrunbook.domain.redact import install_logging_filter, redact


class OneLineParser(argparse.ArgumentParser):
    """argparse, but bad usage is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"pgrunbook: error: {message} (see pgrunbook {self._command()}--help)\n")
        raise SystemExit(2)

    def _command(self) -> str:
        parts = self.prog.split()[1:]
        return " ".join(parts) + " " if parts else ""


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("configuration (flags override PGRUNBOOK_* variables)")
    g.add_argument("--database-url", help="libpq URI of the database (PGRUNBOOK_DATABASE_URL)")
    g.add_argument("--database-name", help="the database's name in the catalog (PGRUNBOOK_DATABASE_NAME)")
    g.add_argument("--bucket", help="primary backup bucket (PGRUNBOOK_BUCKET)")
    g.add_argument("--region", help="primary region (PGRUNBOOK_REGION)")
    g.add_argument("--dr-bucket", help="disaster-recovery bucket (PGRUNBOOK_DR_BUCKET)")
    g.add_argument("--dr-region", help="disaster-recovery region (PGRUNBOOK_DR_REGION)")
    g.add_argument("--restore-target-url", help="server for scratch restores (PGRUNBOOK_RESTORE_TARGET_URL)")
    g.add_argument("--prefix", help="key prefix in the buckets (PGRUNBOOK_PREFIX, default pgrunbook)")
    g.add_argument("--work-dir", help="local scratch space (PGRUNBOOK_WORK_DIR)")
    g.add_argument("--json", action="store_true", help="print the report as JSON")
    g.add_argument("--verbose", "-v", action="store_true", help="more progress detail")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="pgrunbook", description="PostgreSQL operations runbooks as software.")
    parser.add_argument("--version", action="version", version=f"pgrunbook {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True

    p = sub.add_parser("backup", help="take a verified backup and copy it to the DR region")
    _common(p)
    p.add_argument("--tier", help="tiers, comma separated (default: derived from the date)")
    p.add_argument("--jobs", type=int, help="parallel pg_dump jobs (PGRUNBOOK_JOBS, default 2)")
    p.add_argument("--compression", type=int, help="gzip level 0-9 (PGRUNBOOK_COMPRESSION, default 1)")
    p.add_argument("--profile", help="default | supabase (PGRUNBOOK_PROFILE)")
    p.add_argument("--mirror", help="backup_metadata mirror: auto | on | off (PGRUNBOOK_MIRROR)")

    p = sub.add_parser("restore-test", help="restore a backup into a scratch database and prove it complete")
    _common(p)
    p.add_argument("--backup-id", help="the backup to test (default: the newest complete one)")
    p.add_argument("--from", dest="source", choices=("primary", "dr"), default="primary")
    p.add_argument("--keep", action="store_true", help="keep the scratch database")
    p.add_argument("--jobs", type=int, help="parallel pg_restore jobs (PGRUNBOOK_JOBS, default 2)")
    p.add_argument("--prefer-tier", help="test the newest backup of this tier (e.g. weekly), else the newest")
    p.add_argument(
        "--no-checks", action="store_true", help="skip the data-quality checks on the restored copy"
    )

    p = sub.add_parser(
        "verify", help="daily verification: freshness, checksums in both regions, database checks"
    )
    _common(p)
    p.add_argument("--recent-days", type=int, default=7, help="verify every file of backups this recent")
    p.add_argument("--no-database", action="store_true", help="check only the backups, not the live database")

    p = sub.add_parser(
        "dr-drill", help="monthly DR drill: restore from the DR region only; measure RTO and RPO"
    )
    _common(p)
    p.add_argument("--scenario", default="complete_data_loss", help="complete_data_loss")
    p.add_argument("--attempts", type=int, default=3, help="older DR backups to fall back to")
    p.add_argument(
        "--dr-restore-target-url", help="the DR region's restore server (PGRUNBOOK_DR_RESTORE_TARGET_URL)"
    )

    p = sub.add_parser("retention", help="delete backups past their tier's retention, in both regions")
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")

    p = sub.add_parser("health", help="weekly health: slow queries, unused indexes, bloat, locks, statistics")
    _common(p)

    p = sub.add_parser("status", help="the morning check: tiers, last runs, drill trend, and the catalog")
    _common(p)
    p.add_argument("--limit", type=int, help="show only the newest N backups")

    _pitr_parsers(sub)
    _migrate_parsers(sub)

    p = sub.add_parser("demo", help="the whole story on the embedded database and moto")
    p.add_argument("--tasks", type=int, default=100_000, help="tasks in the sample (default 100000)")
    p.add_argument("--keep", action="store_true", help="keep the demo's server and files")
    p.add_argument("--json", action="store_true")
    p.add_argument("--verbose", "-v", action="store_true")
    return parser


def _pitr_parsers(sub: Any) -> None:
    pitr = sub.add_parser(
        "pitr", help="point-in-time recovery: start, approve or reject, status, maintenance"
    )
    commands = pitr.add_subparsers(dest="pitr_command", metavar="PITR_COMMAND", parser_class=OneLineParser)
    commands.required = True

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help)
        _common(p)
        p.add_argument(
            "--state-machine-arn", dest="pitr_state_machine_arn", help="(PGRUNBOOK_PITR_STATE_MACHINE_ARN)"
        )
        return p

    p = add("start", help="start a recovery to a point in time (Step Functions, or --local)")
    p.add_argument("--target-time", required=True, help="ISO 8601 with a time zone: 2025-09-07T14:30:00Z")
    p.add_argument("--provider", choices=("logical", "supabase", "rds"), help="(PGRUNBOOK_PITR_PROVIDER)")
    p.add_argument("--reason", help="why: the incident, shown in the approval request and the report")
    p.add_argument("--local", action="store_true", help="run every phase in this process, not Step Functions")
    p.add_argument("--yes", action="store_true", help="--local: approve without asking")
    p.add_argument("--approval-timeout", type=int, help="seconds to wait for approval")
    p.add_argument("--deadline", type=int, help="seconds the recovery itself may take")
    p.add_argument("--poll", type=int, help="seconds between progress checks")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the execution's validation")

    p = add("status", help="where a recovery stands, maintenance mode, the last recovery report")
    p.add_argument("execution", nargs="?", help="execution name or ARN (default: the newest)")

    _answer_parsers(add, "the recovery")

    p = add("maintenance", help="the application's maintenance mode: on, off or status")
    p.add_argument("switch", choices=("on", "off", "status"))
    p.add_argument("--reason", default="switched on by an operator", help="with on: shown to the application")


def _answer_parsers(add: Any, what: str) -> None:
    """``approve`` and ``reject`` of a workflow's waiting execution (``add`` makes a subcommand)."""
    p = add("approve", help=f"approve {what} an execution is waiting on")
    p.add_argument("execution", help="execution name or ARN")
    p.add_argument("--yes", action="store_true", help="do not ask to confirm")
    p = add("reject", help=f"reject {what} an execution is waiting on")
    p.add_argument("execution", help="execution name or ARN")
    p.add_argument("--reason", required=True, help="why (goes into the report)")


def _migrate_parsers(sub: Any) -> None:
    migrate = sub.add_parser("migrate", help="schema migrations: lint, status, plan, apply, rollback")
    commands = migrate.add_subparsers(
        dest="migrate_command", metavar="MIGRATE_COMMAND", parser_class=OneLineParser
    )
    commands.required = True

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help)
        _common(p)
        p.add_argument("--migrations-dir", help="the migration files (PGRUNBOOK_MIGRATIONS_DIR)")
        return p

    add("lint", help="check the files: transaction-unsafe and destructive statements, missing down parts")
    add("status", help="applied and pending migrations; changed, missing or out-of-order files")
    add("plan", help="what apply would run, with its lint findings")
    p = add("apply", help="apply pending migrations, one transaction each, stopping at the first failure")
    p.add_argument(
        "--allow-destructive", action="store_true", help="run migrations lint flags as destructive"
    )
    p.add_argument("--to", help="apply up to this version")
    p.add_argument("--lock-timeout", help="lock_timeout of each migration (PGRUNBOOK_LOCK_TIMEOUT, 5s)")
    p.add_argument("--statement-timeout", help="(PGRUNBOOK_STATEMENT_TIMEOUT, 15min)")
    p = add("rollback", help="run down parts, newest first")
    p.add_argument("--steps", type=int, help="how many migrations (default 1)")
    p.add_argument("--to", help="roll back every migration after this version")

    def workflow(name: str, help: str) -> argparse.ArgumentParser:
        p = add(name, help)
        p.add_argument(
            "--state-machine-arn",
            dest="migration_state_machine_arn",
            help="(PGRUNBOOK_MIGRATION_STATE_MACHINE_ARN)",
        )
        return p

    p = workflow(
        "start",
        help="start the migration workflow (lint, backup, dry run, approval, apply): deployed, or --local",
    )
    p.add_argument("--reason", help="why (shown in the approval request and the report)")
    p.add_argument("--local", action="store_true", help="run every phase in this process, not Step Functions")
    p.add_argument("--yes", action="store_true", help="--local: approve without asking")
    p.add_argument(
        "--approval",
        choices=("on", "off"),
        help="--local: ask for approval after the dry run (default PGRUNBOOK_MIGRATION_APPROVAL, on); "
        "destructive migrations always ask",
    )
    _answer_parsers(workflow, "the migrations")
    p = workflow("runs", help="the migration workflow's executions and where the newest stands")
    p.add_argument("execution", nargs="?", help="execution name or ARN (default: the newest)")


def _settings(args: argparse.Namespace):
    from pgrunbook.settings.model import Settings

    overrides: dict[str, Any] = {
        "database_url": args.database_url,
        "database_name": args.database_name,
        "bucket": args.bucket,
        "region": args.region,
        "dr_bucket": args.dr_bucket,
        "dr_region": args.dr_region,
        "restore_target_url": args.restore_target_url,
        "prefix": args.prefix,
        "work_dir": args.work_dir,
    }
    for name in (
        "jobs",
        "compression",
        "profile",
        "mirror",
        "dr_restore_target_url",
        "pitr_state_machine_arn",
        "migrations_dir",
        "lock_timeout",
        "statement_timeout",
        "migration_state_machine_arn",
    ):
        if hasattr(args, name):
            overrides[name] = getattr(args, name)
    return Settings.load(**overrides)


def _emit(args: argparse.Namespace, report: Any, render: Any) -> int:
    from pgrunbook.entrypoints.cli.render import print_result

    print_result(args.json, report.to_dict(), render(report))
    return report.exit_code


def _run(args: argparse.Namespace) -> int:
    from pgrunbook.progress import StreamProgress

    progress = StreamProgress(sys.stderr, verbose=args.verbose)
    if args.command == "demo":
        from pgrunbook.entrypoints.demo import run_demo

        if args.tasks < 1:
            raise ConfigError("--tasks must be at least 1")
        return run_demo(tasks=args.tasks, keep=args.keep, json_out=args.json)
    settings = _settings(args)
    from pgrunbook.entrypoints.cli import render

    if args.command == "status":
        from pgrunbook.operations.status import build_status

        if args.limit is not None and args.limit < 1:
            raise ConfigError("--limit must be at least 1")
        return _emit(args, build_status(settings, limit=args.limit), render.render_status)

    if args.command == "migrate":
        from pgrunbook.entrypoints.cli.migrate import run_migrate

        return run_migrate(args, settings, progress)
    if args.command == "pitr":
        from pgrunbook.entrypoints.cli.pitr import run_pitr

        return run_pitr(args, settings, progress)

    from pgrunbook.operations.context import JobContext, run_job

    ctx = JobContext(settings, progress=progress)
    if args.command == "backup":
        report = run_job("backup", ctx, tiers=args.tier)
        return _emit_raw(args, report, render.render_backup)
    if args.command == "restore-test":
        report = run_job(
            "restore-test",
            ctx,
            backup_id=args.backup_id,
            source=args.source,
            keep=args.keep,
            prefer_tier=args.prefer_tier,
            run_user_checks=not args.no_checks,
        )
        return _emit_raw(args, report, render.render_restore)
    if args.command == "verify":
        if args.recent_days < 1:
            raise ConfigError("--recent-days must be at least 1")
        report = run_job("verify", ctx, recent_days=args.recent_days, check_database=not args.no_database)
    elif args.command == "dr-drill":
        if args.attempts < 1:
            raise ConfigError("--attempts must be at least 1")
        report = run_job("dr-drill", ctx, scenario=args.scenario, attempts=args.attempts)
    elif args.command == "retention":
        report = run_job("retention", ctx, dry_run=args.dry_run)
    elif args.command == "health":
        report = run_job("health", ctx)
    else:
        raise ConfigError(f"unknown command {args.command}")
    return _emit(args, report, render.render_job)


def _emit_raw(args: argparse.Namespace, report: Any, render: Any) -> int:
    """Backup and restore-test print their engine's own report (richer than the job
    report), with the job report's findings and location added."""
    from dataclasses import replace

    from pgrunbook.entrypoints.cli.render import print_result, render_job

    raw = report.raw
    data = {**raw.to_dict(), "report": report.to_dict()}
    text = render(raw)
    extra = [f for f in report.findings if ":" in f.check]  # e.g. checks on the restored copy
    if extra:
        text += "\n\n" + "\n".join(render_job(replace(report, findings=extra)).splitlines()[1:])
    elif report.location:
        text += f"\n  report        {report.location}"
    print_result(args.json, data, text)
    return max(raw.exit_code, report.exit_code)


def _terminate(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="pgrunbook: %(levelname)s %(message)s")
    install_logging_filter()
    args = build_parser().parse_args(argv)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (tests)
        previous = None
    try:
        return _run(args)
    except PgRunbookError as exc:
        message = redact(str(exc))
        sys.stderr.write(f"pgrunbook: {message}\n")
        if getattr(args, "json", False):
            sys.stdout.write(
                json.dumps({"status": "error", "error": message, "exit_code": exc.exit_code}) + "\n"
            )
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("pgrunbook: interrupted\n")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    raise SystemExit(main())
