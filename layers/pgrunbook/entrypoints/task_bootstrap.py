"""The first code a Fargate task runs: no image is built for pgrunbook.

The task runs a stock AWS image (the Lambda Python base image from ECR Public, which has
Python and boto3) with this file's source as its command (``python3 -c <source>``; the task
definition carries it).  It fetches the two layer archives the stack already builds for the
functions (CDK assets; their S3 URLs in ``PGRUNBOOK_LAYERS``), unpacks them where Lambda would
mount them (``PGRUNBOOK_LAYER_ROOT``, default ``/opt``), and hands over to
:func:`pgrunbook.entrypoints.task.main`, which runs the same operation code with the same
options as the function.  So the library, its pinned dependencies, pg_dump and the embedded
servers are byte for byte what the functions run.

It uses only the standard library and boto3.  Exit status: the operation's (0, 1, 2); 70 when
the task could not start (the archives could not be fetched or unpacked), with one line on
stderr saying why.
"""

import os
import shutil
import stat
import sys
import tempfile
import zipfile

START_FAILED = 70  # EX_SOFTWARE: the task never got to run the operation


def _s3_location(url):
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise ValueError(f"PGRUNBOOK_LAYERS holds s3://bucket/key URLs, not {url!r}")
    bucket, key = url[5:].split("/", 1)
    return bucket, key


def unpack(archive, root):
    """A layer zip into ``root`` as Lambda would mount it: modes (executables) and symbolic
    links kept, nothing written outside ``root``."""
    top = os.path.realpath(root)
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            target = os.path.realpath(os.path.join(top, info.filename))
            if target != top and not target.startswith(top + os.sep):
                raise ValueError(f"{info.filename!r} would be written outside {root}")
            mode = info.external_attr >> 16
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if stat.S_ISLNK(mode):
                if os.path.lexists(target):
                    os.unlink(target)
                os.symlink(z.read(info).decode(), target)
                continue
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            if mode & 0o777:
                os.chmod(target, mode & 0o777)


def fetch_layers(urls, root, client=None):
    """Download each ``s3://`` archive and unpack it into ``root``."""
    if client is None:
        import boto3

        client = boto3.client("s3")
    os.makedirs(root, exist_ok=True)
    for url in urls:
        bucket, key = _s3_location(url)
        with tempfile.TemporaryDirectory(prefix="pgrunbook-layer-") as scratch:
            archive = os.path.join(scratch, "layer.zip")
            client.download_file(bucket, key, archive)
            unpack(archive, root)


def main():
    root = os.environ.get("PGRUNBOOK_LAYER_ROOT") or "/opt"
    urls = [u for u in (os.environ.get("PGRUNBOOK_LAYERS") or "").split(",") if u.strip()]
    try:
        if not urls:
            raise ValueError("PGRUNBOOK_LAYERS names no layer archive")
        fetch_layers([u.strip() for u in urls], root)
    except Exception as exc:
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        sys.stderr.write(f"pgrunbook task: could not fetch the layers: {message}\n")
        return START_FAILED
    # as in Lambda: the library's python/ first, the tools' libraries for their processes
    os.environ["PGRUNBOOK_LAYER_ROOT"] = root
    library = os.path.join(root, "lib")
    os.environ["LD_LIBRARY_PATH"] = ":".join(p for p in (library, os.environ.get("LD_LIBRARY_PATH")) if p)
    sys.path.insert(0, os.path.join(root, "python"))
    from pgrunbook.entrypoints.task import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
