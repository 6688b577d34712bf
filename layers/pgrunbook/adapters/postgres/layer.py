"""Where the Lambda layers are: ``/opt`` in Lambda; in a Fargate task, wherever its bootstrap
unpacked them (``PGRUNBOOK_LAYER_ROOT``, set before pgrunbook is imported: see
:mod:`pgrunbook.entrypoints.task_bootstrap`).  The tools layer holds ``pgtools/<major>/bin``
(pg_dump, pg_restore, psql), ``lib`` and the embedded servers' ``pgserver/<major>.tar.xz``."""

from __future__ import annotations

import os
from pathlib import Path

ROOT_VARIABLE = "PGRUNBOOK_LAYER_ROOT"
ROOT = Path(os.environ.get(ROOT_VARIABLE) or "/opt")
