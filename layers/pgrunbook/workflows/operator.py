"""The operator's side of a workflow at a terminal: confirming an approval by typing the
database's name, and ``pgrunbook <workflow> approve|reject EXECUTION``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.ids import utcnow

if TYPE_CHECKING:
    from pgrunbook.adapters.aws.stepfunctions import Executions


def confirm_at_terminal(database: str, summary: str) -> bool:
    """Show what will happen; approved only if the person types the database's name."""
    sys.stderr.write(summary + "\n\n")
    sys.stderr.write(f"Type the database name ({database}) to approve; anything else aborts: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip() == database


def require_terminal_or_yes(yes: bool, what: str) -> None:
    """Checked before anything happens: without a terminal nobody can type the answer."""
    if not yes and not sys.stdin.isatty():
        raise ConfigError(f"{what} asks for confirmation at a terminal: pass --yes to approve without asking")


def answer(
    executions: Executions,
    command: str,
    execution: str,
    *,
    by: str,
    yes: bool = False,
    reason: str | None = None,
    summary: Callable[[dict[str, Any]], list[str]],
) -> dict[str, Any]:
    """``pgrunbook <workflow> approve|reject EXECUTION``.  Approving at a terminal shows
    ``summary(state)`` of the state the execution waits with and asks for the database name."""
    if command == "reject":
        if not reason or not reason.strip():
            raise ConfigError("--reason must say why")
        return executions.reject(execution, by=by, reason=reason.strip())
    require_terminal_or_yes(yes, f"pgrunbook {executions.workflow} approve")

    def confirm(state: dict[str, Any]) -> None:
        if not yes and not confirm_at_terminal(str(state.get("database")), "\n".join(summary(state))):
            raise ConfigError("not approved: the answer did not match the database name; nothing was sent")

    return executions.approve(execution, by=by, now=utcnow(), confirm=confirm)


def answer_from_command(
    executions: Executions,
    args: Any,
    *,
    by: str,
    summary: Callable[[dict[str, Any]], list[str]],
    approved: str,
    rejected: str,
) -> tuple[dict[str, Any], str]:
    """``pgrunbook <workflow> approve|reject`` from its parsed arguments: the answer sent, and
    one line saying what follows (``approved``: what happens now; ``rejected``: what does not)."""
    command = next(
        getattr(args, name)
        for name in ("pitr_command", "migrate_command", "recover_tables_command")
        if hasattr(args, name)
    )
    answered = answer(
        executions,
        command,
        args.execution,
        by=by,
        yes=getattr(args, "yes", False),
        reason=getattr(args, "reason", None),
        summary=summary,
    )
    if answered.get("approved"):
        return answered, f"approved {answered['name']} as {answered['by']}: {approved}"
    return answered, f"rejected {answered['name']}: {rejected}"
