"""Where pgrunbook's SQL files are: bundled next to the package (Lambda layer) or in the
source checkout's ``sql/`` folder (``pip install -e .``), or ``PGRUNBOOK_SQL_DIR``."""

from __future__ import annotations

import os
from pathlib import Path


def sql_dir() -> Path:
    explicit = os.environ.get("PGRUNBOOK_SQL_DIR")
    candidates = [Path(explicit)] if explicit else []
    here = Path(__file__).resolve().parent
    candidates += [here / "sql", here.parents[1] / "sql"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("pgrunbook's sql/ folder was not found; set PGRUNBOOK_SQL_DIR")


def sql_file(relative: str) -> str:
    return (sql_dir() / relative).read_text()
