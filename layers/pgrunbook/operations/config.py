"""``pgrunbook config``: the effective configuration, each value with where it came from.

One row per option of :mod:`pgrunbook.settings.options` (``default``, ``env`` or ``flag``), and
one for each connection pgrunbook would open (the database, the restore targets), whose source
is ``secret`` when it is read from Secrets Manager.  Passwords never appear: URLs are shown
without them, and a secret's content is shown as the connection it describes
(``user@host:port/db``).  A secret that cannot be read is a warning, not a refusal: the command
is how one finds out what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.domain.errors import PgRunbookError
from pgrunbook.domain.redact import one_line, redact
from pgrunbook.domain.results import Report
from pgrunbook.operations.context import OperationContext
from pgrunbook.settings.model import Settings
from pgrunbook.settings.options import OPTIONS


@dataclass
class ConfigRow:
    name: str
    value: Any
    source: str  # default | env | flag | secret
    env: str | None = None
    flag: str | None = None


@dataclass
class ConfigResult:
    options: list[ConfigRow] = field(default_factory=list)
    connections: list[ConfigRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "options": [asdict(r) for r in self.options],
            "connections": [asdict(r) for r in self.connections],
        }


def shown(value: Any, secret: bool) -> Any:
    """A value as ``config`` shows it: URLs without their password, everything redacted."""
    if value is None or not isinstance(value, str):
        return value
    if secret and value.startswith(("postgresql://", "postgres://")):
        try:
            return ConnInfo.parse(value).display()
        except PgRunbookError:
            return "(not a valid URL)"
    return redact(value)


def effective(settings: Settings) -> ConfigResult:
    result = ConfigResult()
    for opt in OPTIONS:
        result.options.append(
            ConfigRow(
                opt.name,
                shown(getattr(settings, opt.name), opt.secret),
                settings.sources.get(opt.name, "default"),
                opt.env,
                opt.flag,
            )
        )
    return result


def _connection(
    settings: Settings, name: str, url_option: str, arn_option: str, resolve: Callable[[], ConnInfo | None]
) -> ConfigRow | None:
    if getattr(settings, url_option):
        source = settings.sources.get(url_option, "env")
    elif getattr(settings, arn_option):
        source = "secret"
    else:
        return None
    try:
        info = resolve()
    except PgRunbookError as exc:
        return ConfigRow(name, f"(cannot read: {one_line(exc)})", source)
    return ConfigRow(name, info.display() if info is not None else None, source)


def run(ctx: OperationContext, report: Report) -> None:
    settings = ctx.settings
    result = effective(settings)
    for row in (
        _connection(settings, "database", "database_url", "database_secret_arn", settings.conninfo),
        _connection(
            settings,
            "restore target",
            "restore_target_url",
            "restore_target_secret_arn",
            settings.restore_target,
        ),
        _connection(
            settings,
            "DR restore target",
            "dr_restore_target_url",
            "dr_restore_target_secret_arn",
            settings.dr_restore_target,
        ),
    ):
        if row is None:
            continue
        result.connections.append(row)
        if str(row.value).startswith("(cannot read"):
            report.add("config", "warning", f"{row.name}: {row.value}")
    report.payload = result
    report.figures.update(
        options=len(result.options),
        from_env=sum(1 for r in result.options if r.source == "env"),
        from_flags=sum(1 for r in result.options if r.source == "flag"),
    )
