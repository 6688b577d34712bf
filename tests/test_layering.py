"""The library's layers, as docs/architecture.md draws them: a package imports only its own
layer and the layers below, so the arrows of the import graph all point down.

    entrypoints  →  workflows  →  operations  →  catalog, checks  →  settings  →  adapters  →  progress  →  domain
"""

from __future__ import annotations

import ast
from pathlib import Path

import pgrunbook

ROOT = Path(pgrunbook.__file__).parent
LAYERS = {
    "domain": 0,
    "progress": 1,
    "adapters": 2,
    "settings": 3,
    "catalog": 4,
    "checks": 4,
    "operations": 5,
    "workflows": 6,
    "entrypoints": 7,
}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "pgrunbook" or len(parts) < 2:
        return None
    return LAYERS[parts[1]]


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def test_every_module_belongs_to_a_layer():
    top = {
        p.stem if p.is_file() else p.name
        for p in ROOT.iterdir()
        if p.name not in ("__init__.py", "__pycache__", "sql")
    }
    assert top == set(LAYERS)


def test_imports_point_down():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        if relative.parts == ("__init__",):
            continue
        here = LAYERS[relative.parts[0]]
        for module in imports(path):
            there = layer_of(module)
            if there is not None and there > here:
                wrong.append(f"{relative} imports {module}")
    assert wrong == []
