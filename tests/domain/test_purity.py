"""The domain package is pure: it imports the standard library and itself, nothing else.

No boto3, pg8000, subprocess or sockets, and nothing from the rest of pgrunbook (adapters,
operations ...): what is in ``pgrunbook.domain`` can be read, tested and reasoned about without
a database, a bucket or a network.  Read from the source, so a lazy import inside a function
counts too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pgrunbook.domain

DOMAIN = Path(pgrunbook.domain.__file__).parent
# standard-library modules that talk to the world: not for the domain either
WORLDLY = {"subprocess", "socket", "ssl", "http", "urllib", "asyncio", "sqlite3", "shutil", "tempfile"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_domain_imports_only_the_standard_library_and_itself():
    files = sorted(DOMAIN.glob("*.py"))
    assert len(files) > 10
    for path in files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top == "pgrunbook":
                assert module == "pgrunbook.domain" or module.startswith("pgrunbook.domain."), (
                    path.name,
                    module,
                )
                continue
            assert top == "__future__" or top in sys.stdlib_module_names, (path.name, module)
            assert top not in WORLDLY, (path.name, module)


def test_the_check_can_fail():
    # the same rule, held against a module that breaks it
    probe = DOMAIN.parent / "adapters" / "s3" / "store.py"
    assert "boto3" in imported_modules(probe)
