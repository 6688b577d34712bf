"""Work the test session's workers share: ``once`` makes a directory's contents once per
``make test`` run, whichever xdist worker asks first; the other waits and reads it.

A CDK synthesis costs 10-15 s of a core, and each worker's session fixtures would otherwise
make the same ones (the app as cdk.json configures it, the workflows' definitions)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest


def once(tmp_path_factory: pytest.TempPathFactory, key: str, produce: Callable[[Path], None]) -> Path:
    """``key``'s directory, filled by ``produce(directory)`` the first time in this run."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # one process: nothing to share
        out = tmp_path_factory.mktemp(key)
        produce(out)
        return out
    # every worker's base temp is <the run's temp>/popen-gw<N>
    root = tmp_path_factory.getbasetemp().parent / f"shared-{run}"
    root.mkdir(exist_ok=True)
    out = root / key
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (out / ".done").exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            produce(out)
            (out / ".done").touch()
    return out
