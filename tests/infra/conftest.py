"""The two layers, built once per session by the stack's own bundling code: the layer tests
and the Fargate task's bootstrap test both use them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra.bundling import layers


@pytest.fixture(scope="session")
def pgtools_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pgtools layer, moved after the build: nothing can lean on the wheel's layout."""
    built = tmp_path_factory.mktemp("pgtools-built")
    layers.build_pgtools_layer(built)
    opt = tmp_path_factory.mktemp("pgtools-moved") / "opt"
    shutil.copytree(built, opt, symlinks=True)
    shutil.rmtree(built)
    return opt


@pytest.fixture(scope="session")
def pgrunbook_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pgrunbook-layer")
    out.mkdir(exist_ok=True)  # an existing, empty output directory, as CDK hands it over
    layers.build_pgrunbook_layer(out)
    return out
