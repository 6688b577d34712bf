"""The uploader follows the data files pg_dump is still writing: their parts go up, and their
COPY-text digests are taken, while the dump runs."""

from __future__ import annotations

import gzip
import time
import zlib

import pytest

from pgrunbook.adapters.postgres.copytext import digest_file
from pgrunbook.adapters.s3.store import MiB, ObjectStore, TransferSettings
from pgrunbook.adapters.s3.uploads import Uploader
from pgrunbook.progress import NullProgress

BACKUP = "20260101T000000Z"


@pytest.fixture
def store(s3, monkeypatch) -> ObjectStore:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return ObjectStore(
        s3.primary, s3.primary_region, "pgrunbook", "app", transfer=TransferSettings(5 * MiB, 5 * MiB)
    )


def _rows(start: int, count: int) -> bytes:
    return b"".join(
        b"%d\trow %d with some text to make it longer\t%d\n" % (i, i, i * 7)
        for i in range(start, start + count)
    )


def test_a_file_being_written_is_followed_uploaded_and_digested_before_it_is_complete(store, tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir()
    path = dump / "4242.dat.gz"
    uploader = Uploader(store, BACKUP, NullProgress(), 2, remove_uploaded=True, copy_digests=True)
    uploader.watch(dump, interval=0.02)
    seen_open_upload = False
    with path.open("wb") as raw:
        gz = zlib.compressobj(0, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # level 0: the parts fill fast
        for batch in range(40):
            raw.write(gz.compress(_rows(batch * 5000, 5000)))
            raw.flush()
            time.sleep(0.01)
            uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
            seen_open_upload = seen_open_upload or bool(uploads)
        raw.write(gz.compress(b"\\.\n\n") + gz.flush())
    expected = digest_file(path).result()
    whole = path.read_bytes()
    uploader.submit(path)  # pg_dump says it has finished the file
    (entry,) = uploader.wait()

    assert seen_open_upload  # parts went up while the file was still being written
    assert entry.parts > 1 and entry.size == len(whole)
    rows, fingerprint, _ = uploader.digests[path.name]
    assert (rows, fingerprint) == expected and rows == 200_000
    assert gzip.decompress(store.get_bytes(store.key(BACKUP, path.name))) == gzip.decompress(whole)
    assert not path.exists()  # removed once uploaded


def test_abort_abandons_a_followed_file_and_leaves_no_open_upload(store, tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir()
    path = dump / "4243.dat"
    path.write_bytes(_rows(0, 200_000))  # bigger than a part: one goes up, then pg_dump dies
    uploader = Uploader(store, BACKUP, NullProgress(), 2, copy_digests=True)
    uploader.watch(dump, interval=0.02)
    deadline = time.monotonic() + 10
    while not store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    uploader.abort()
    assert time.monotonic() - started < 5
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert store.client.list_objects_v2(Bucket=store.bucket).get("KeyCount") == 0
    assert uploader.started_keys == [store.key(BACKUP, path.name)]


def test_a_file_finished_before_the_watch_saw_it_is_uploaded_once(store, tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir()
    uploader = Uploader(store, BACKUP, NullProgress(), 2, copy_digests=True)
    uploader.watch(dump, interval=0.02)
    paths = []
    for n in range(20):
        path = dump / f"{5000 + n}.dat"
        path.write_bytes(_rows(n, 3) + b"\\.\n\n")
        uploader.submit(path)
        paths.append(path)
    time.sleep(0.1)  # the watch lists them too
    entries = uploader.wait()
    assert [e.name for e in entries] == sorted(p.name for p in paths)
    assert {name: d[0] for name, d in uploader.digests.items()} == {p.name: 3 for p in paths}
    keys = [o["Key"] for o in store.client.list_objects_v2(Bucket=store.bucket)["Contents"]]
    assert sorted(keys) == sorted(store.key(BACKUP, p.name) for p in paths)
    assert len(uploader.started_keys) == len(set(uploader.started_keys)) == 20


def test_no_file_is_followed_after_wait(store, tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir()
    uploader = Uploader(store, BACKUP, NullProgress(), 2)
    uploader.watch(dump, interval=0.01)
    assert uploader.wait() == []
    (dump / "6000.dat").write_bytes(b"1\n")
    time.sleep(0.1)
    assert uploader.started_keys == []
