"""The Fargate task's entry point, end to end, as the task definition runs it: the two layer
archives built by the stack's bundling code, zipped as CDK uploads them, put in (moto) S3;
``python3 -c <bootstrap source>`` under the functions' CPython, in a process that has boto3
(as the stock image has) but not pgrunbook, fetches and unpacks them into a temporary root
and runs a backup from them against the embedded database."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import zipfile
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from infra.constructs.runners import bootstrap_source
from pgrunbook.entrypoints.task_bootstrap import unpack
from tests.infra.test_layers import runtime_python

IMAGE_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zip_layer(layer: Path, archive: Path) -> None:
    """As CDK's asset staging zips a directory: modes kept, symbolic links as links."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for path in sorted(layer.rglob("*")):
            name = str(path.relative_to(layer))
            info = zipfile.ZipInfo(name + ("/" if path.is_dir() and not path.is_symlink() else ""))
            mode = path.lstat().st_mode
            info.external_attr = (mode & 0xFFFF) << 16
            if path.is_symlink():
                z.writestr(info, os.readlink(path))
            elif path.is_dir():
                z.writestr(info, b"")
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                with path.open("rb") as src, z.open(info, "w") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)


@pytest.fixture(scope="module")
def archives(pgrunbook_layer, pgtools_layer, tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("layer-zips")
    zips = []
    for name, layer in (("library", pgrunbook_layer), ("tools", pgtools_layer)):
        archive = out / f"{name}.zip"
        zip_layer(layer, archive)
        zips.append(archive)
    return zips


@pytest.fixture(scope="module")
def image_python(pgrunbook_layer, tmp_path_factory) -> Path:
    """What the stock image has before the task starts: boto3 and its dependencies, no pgrunbook."""
    site = tmp_path_factory.mktemp("image-site-packages")
    python = pgrunbook_layer / "python"
    for entry in python.iterdir():
        if entry.name.startswith(IMAGE_PACKAGES):
            (site / entry.name).symlink_to(entry)
    assert not (site / "pgrunbook").exists()
    return site


def test_unpack_keeps_modes_and_links_and_refuses_to_escape(tmp_path):
    source = tmp_path / "src"
    (source / "bin").mkdir(parents=True)
    tool = source / "bin" / "pg_dump"
    tool.write_text("#!/bin/sh\necho 18\n")
    tool.chmod(0o755)
    (source / "bin" / "pg_restore").symlink_to("pg_dump")
    zip_layer(source, tmp_path / "layer.zip")
    root = tmp_path / "opt"
    unpack(tmp_path / "layer.zip", root)
    assert stat.S_IMODE((root / "bin" / "pg_dump").stat().st_mode) == 0o755
    assert os.readlink(root / "bin" / "pg_restore") == "pg_dump"

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../outside.txt", b"x")
    with pytest.raises(ValueError, match="outside"):
        unpack(evil, tmp_path / "opt2")
    assert not (tmp_path / "outside.txt").exists()


def test_the_bootstrap_fetches_the_layers_and_runs_a_backup_from_them(
    archives,
    image_python,
    new_db,
    tmp_path,
    s3,  # s3: moto's in-process mock stays out of the way
):
    interpreter = runtime_python()
    if interpreter is None:
        pytest.skip("no CPython of the functions' runtime on this machine")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client(
            "s3",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        for bucket in ("cdk-assets", "task-primary"):
            client.create_bucket(Bucket=bucket)
        boto3.client(
            "s3",
            region_name="eu-west-1",
            endpoint_url=endpoint,
            aws_access_key_id="x",
            aws_secret_access_key="x",
        ).create_bucket(Bucket="task-dr", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        urls = []
        for archive in archives:
            key = f"{archive.stem}-0123abcd.zip"
            client.upload_file(str(archive), "cdk-assets", key)
            urls.append(f"s3://cdk-assets/{key}")
        source = new_db(
            sql="CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 3000) g;"
        )
        root = tmp_path / "opt"
        empty = tmp_path / "path"
        empty.mkdir()
        env = {
            "PATH": str(empty),  # no PostgreSQL tools: only the unpacked layer's
            "HOME": str(tmp_path),
            "PYTHONPATH": str(image_python),
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PGRUNBOOK_OPERATION": "backup",
            "PGRUNBOOK_LAYERS": ",".join(urls),
            "PGRUNBOOK_LAYER_ROOT": str(root),
            "PGRUNBOOK_TASK": json.dumps(
                {"options": {"tier": "daily"}, "runner": {"runner": "fargate", "why": "test"}}
            ),
            "PGRUNBOOK_DATABASE_URL": source.libpq_uri(),
            "PGRUNBOOK_BUCKET": "task-primary",
            "PGRUNBOOK_REGION": "us-east-1",
            "PGRUNBOOK_DR_BUCKET": "task-dr",
            "PGRUNBOOK_DR_REGION": "eu-west-1",
            "PGRUNBOOK_WORK_DIR": str(tmp_path / "work"),
            "PGRUNBOOK_HOME": str(tmp_path / "home"),
        }
        done = subprocess.run(
            [interpreter, "-c", bootstrap_source()],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert lines[-1]["status"] == "ok" and lines[-1]["exit_code"] == 0
        assert lines[0]["runner"] == {"runner": "fargate", "why": "test"}
        assert (root / "python" / "pgrunbook").is_dir() and (
            root / "pgtools" / "18" / "bin" / "pg_dump"
        ).is_file()
        keys = [o["Key"] for o in client.list_objects_v2(Bucket="task-primary")["Contents"]]
        [manifest_key] = [k for k in keys if k.endswith("manifest.json")]
        manifest = json.loads(client.get_object(Bucket="task-primary", Key=manifest_key)["Body"].read())
        assert {t["name"]: t["rows"] for t in manifest["tables"]}["t"] == 3000
        # no pg_dump on PATH, no pixeltable wheel importable: the dump is the layer's PostgreSQL 18
        assert manifest["tools"]["pg_dump"].startswith("18.")
        [report_key] = [k for k in keys if "/reports/backup/" in k]
        report = json.loads(client.get_object(Bucket="task-primary", Key=report_key)["Body"].read())
        assert report["status"] == "ok" and report["runner"]["runner"] == "fargate"

        # the archives cannot be fetched: exit 70 and one line saying why
        broken = {
            **env,
            "PGRUNBOOK_LAYERS": "s3://cdk-assets/missing.zip",
            "PGRUNBOOK_LAYER_ROOT": str(tmp_path / "opt2"),
        }
        failed = subprocess.run(
            [interpreter, "-c", bootstrap_source()],
            env=broken,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert failed.returncode == 70
        assert (
            failed.stderr.startswith("pgrunbook task: could not fetch the layers: ")
            and failed.stderr.count("\n") == 1
        )
    finally:
        server.stop()
