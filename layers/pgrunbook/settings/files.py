"""Where pgrunbook's SQL files are: bundled next to the package (Lambda layer), in the source
checkout's ``sql/`` folder (``pip install -e .``), or where ``PGRUNBOOK_SQL_DIR`` says."""

from __future__ import annotations

import os
from pathlib import Path

from pgrunbook.settings.options import option


def sql_dir(explicit: str | None = None) -> Path:
    """The folder: ``explicit`` (Settings.sql_dir), else PGRUNBOOK_SQL_DIR, else searched."""
    given = explicit or os.environ.get(option("sql_dir").env or "")
    candidates = [Path(given)] if given else []
    package = Path(__file__).resolve().parents[1]  # pgrunbook/
    candidates += [package / "sql", package.parents[1] / "sql"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("pgrunbook's sql/ folder was not found; set PGRUNBOOK_SQL_DIR")


def sql_file(relative: str) -> str:
    return (sql_dir() / relative).read_text()
