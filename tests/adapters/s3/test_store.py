"""The S3 adapter: checksums S3 stores, multipart part sizes, and uploads of files still being written."""

from __future__ import annotations

import base64
import hashlib
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgrunbook.adapters.s3.store import (
    MiB,
    ObjectStore,
    TransferSettings,
    composite_checksum,
    expected_checksums,
    make_client,
)
from pgrunbook.domain.errors import WorkDirectoryError
from pgrunbook.domain.manifest import FileEntry

GiB = 1024 * MiB
TiB = 1024 * GiB


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def multipart_entry(data: bytes, part_size: int) -> FileEntry:
    """A manifest entry as a multipart upload of ``data`` records it."""
    parts = [data[i : i + part_size] for i in range(0, len(data), part_size)]
    return FileEntry(
        "3456.dat.gz",
        len(data),
        hashlib.sha256(data).hexdigest(),
        composite_checksum([sha256(p) for p in parts]),
        len(parts),
        part_size,
    )


# -- composite_checksum ---------------------------------------------------------------------


def test_composite_checksum_is_the_sha256_of_the_part_digests_with_the_part_count():
    parts = [b"first part", b"second part", b"third"]
    digests = [sha256(p) for p in parts]
    expected = base64.b64encode(hashlib.sha256(digests[0] + digests[1] + digests[2]).digest()).decode()
    assert composite_checksum(digests) == f"{expected}-3"


def test_composite_checksum_depends_on_part_order_and_boundaries():
    data = bytes(range(100))
    a = composite_checksum([sha256(data[:50]), sha256(data[50:])])
    b = composite_checksum([sha256(data[50:]), sha256(data[:50])])
    c = composite_checksum([sha256(data[:40]), sha256(data[40:])])
    assert len({a, b, c}) == 3


def test_composite_of_one_part_is_not_the_whole_file_checksum():
    data = b"only part"
    whole = base64.b64encode(sha256(data)).decode()
    assert composite_checksum([sha256(data)]) != whole
    assert composite_checksum([sha256(data)]).endswith("-1")


# -- expected_checksums ---------------------------------------------------------------------


def test_single_part_file_expects_its_whole_file_base64_sha256():
    data = b"toc.dat contents"
    whole = base64.b64encode(sha256(data)).decode()
    entry = FileEntry("toc.dat", len(data), hashlib.sha256(data).hexdigest(), whole, 1)
    assert expected_checksums(entry) == {whole}


def test_multipart_file_accepts_whole_file_and_composite_with_and_without_suffix():
    data = bytes(range(256)) * 40
    entry = multipart_entry(data, 4096)
    assert entry.parts == 3
    whole = base64.b64encode(sha256(data)).decode()
    composite = entry.s3_checksum
    bare = composite.removesuffix("-3")
    assert composite.endswith("-3")
    # a server-side copy of up to 5 GiB stores the whole-file SHA-256, a multipart one the composite,
    # and some S3 implementations leave the "-N" suffix out
    assert expected_checksums(entry) == {whole, composite, bare}


def test_checksums_of_other_content_or_other_part_counts_are_not_accepted():
    data = bytes(range(256)) * 40
    entry = multipart_entry(data, 4096)
    accepted = expected_checksums(entry)
    corrupted = bytearray(data)
    corrupted[5000] ^= 1
    assert base64.b64encode(sha256(bytes(corrupted))).decode() not in accepted
    assert multipart_entry(bytes(corrupted), 4096).s3_checksum not in accepted
    assert multipart_entry(data, 2048).s3_checksum not in accepted  # other part boundaries
    assert entry.s3_checksum.replace("-3", "-4") not in accepted
    assert entry.sha256 not in accepted  # hex is not what S3 reports


# -- part sizes -----------------------------------------------------------------------------


def test_default_part_size_for_ordinary_files():
    transfer = TransferSettings()
    assert transfer.part_size_for(100 * MiB) == 64 * MiB
    assert transfer.part_size_for(64 * MiB * 9_000) == 64 * MiB


def test_part_size_grows_so_that_huge_files_stay_under_10000_parts():
    transfer = TransferSettings()
    size = 64 * MiB * 10_000 + 1  # would need 10,001 parts of the default size
    part = transfer.part_size_for(size)
    assert part > 64 * MiB
    assert -(-size // part) <= 10_000


@settings(max_examples=150, database=None)
@given(
    size=st.integers(min_value=1, max_value=5 * TiB),
    part_size=st.integers(min_value=5 * MiB, max_value=512 * MiB),
)
def test_part_size_never_needs_more_than_10000_parts(size, part_size):
    transfer = TransferSettings(part_size=part_size)
    part = transfer.part_size_for(size)
    assert part >= part_size  # never below the configured size (S3's 5 MiB minimum included)
    assert part <= 5 * GiB  # S3's maximum part size, for objects up to S3's 5 TiB maximum
    assert -(-size // part) <= 10_000


# -- request signing ------------------------------------------------------------------------


def sent_headers(store: ObjectStore) -> list[dict[str, str]]:
    """Records the headers of every request ``store`` sends from now on."""
    seen: list[dict[str, str]] = []

    def record(request, **_kwargs):
        seen.append(
            {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        )

    store.client.meta.events.register_first("before-send.s3", record)
    return seen


def test_uploads_over_https_sign_their_checksum_header_instead_of_hashing_the_body_again(
    s3, tmp_path, monkeypatch
):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    store = ObjectStore(s3.primary, s3.primary_region, "pgrunbook", "app")
    assert store.client.meta.endpoint_url.startswith("https://")
    seen = sent_headers(store)
    path = tmp_path / "toc.dat"
    path.write_bytes(b"table data " * 1000)

    entry = store.upload_file(path, store.key("20260101T000000Z", path.name))

    (put,) = seen
    assert put["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert put["x-amz-checksum-sha256"] == entry.s3_checksum  # signed, and checked by S3
    assert "x-amz-checksum-sha256" in put["authorization"].split("SignedHeaders=")[1]
    assert store.verify_object(store.key("20260101T000000Z", path.name), entry) is None


def test_a_plain_http_endpoint_keeps_signed_payloads(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    client = make_client("us-east-1")
    assert client.meta.endpoint_url.startswith("http://")
    assert (client.meta.config.s3 or {}).get("payload_signing_enabled") is not False


def test_dr_copies_keep_a_single_part_sha256_and_recompute_a_multipart_one(s3, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    transfer = TransferSettings(single_put_max=5 * MiB, part_size=5 * MiB)
    primary = ObjectStore(s3.primary, s3.primary_region, "pgrunbook", "app", transfer=transfer)
    dr = ObjectStore(s3.dr, s3.dr_region, "pgrunbook", "app", transfer=transfer)
    small, big = tmp_path / "toc.dat", tmp_path / "3456.dat.gz"
    small.write_bytes(b"toc " * 1000)
    big.write_bytes(bytes(range(256)) * (11 * MiB // 256))
    backup_id = "20260101T000000Z"
    entries = {p.name: primary.upload_file(p, primary.key(backup_id, p.name)) for p in (small, big)}
    assert (entries[small.name].parts, entries[big.name].parts) == (1, 3)
    seen = sent_headers(dr)

    for name, entry in entries.items():
        dr.copy_from(primary, primary.key(backup_id, name), dr.key(backup_id, name), entry)
        assert dr.verify_object(dr.key(backup_id, name), entry) is None

    copy_small, copy_big = [h for h in seen if "x-amz-copy-source" in h]
    assert "x-amz-checksum-algorithm" not in copy_small  # S3 copies the source's SHA-256
    assert copy_big["x-amz-checksum-algorithm"] == "SHA256"  # the composite is replaced by a whole-file one
    stored = dr.head(dr.key(backup_id, small.name))["ChecksumSHA256"]
    assert stored == entries[small.name].s3_checksum


# -- a file uploaded while it is written ------------------------------------------------------


def _growing_store(s3) -> ObjectStore:
    transfer = TransferSettings(single_put_max=5 * MiB, part_size=5 * MiB)
    return ObjectStore(s3.primary, s3.primary_region, "pgrunbook", "app", transfer=transfer)


def test_a_growing_file_goes_up_in_parts_while_it_is_written_and_ends_as_a_whole_upload_would(
    s3, tmp_path, monkeypatch
):
    """The parts of a file pg_dump is still writing are sent as they fill; the entry at the end
    (SHA-256, composite, parts) is what uploading the finished file gives, and every byte was
    seen once, in order."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    store = _growing_store(s3)
    path = tmp_path / "3456.dat.gz"
    data = bytes(range(256)) * (13 * MiB // 256)
    path.write_bytes(b"")
    complete, stop = threading.Event(), threading.Event()
    sent: list[tuple[str, bool]] = []  # (part number, the file was complete when it was sent)

    def record(request, **_kwargs):
        if "partNumber=" in request.url:
            sent.append((request.url.split("partNumber=")[1].split("&")[0], complete.is_set()))

    store.client.meta.events.register_first("before-send.s3", record)

    def write() -> None:
        with path.open("ab") as handle:
            for start in range(0, len(data), MiB):
                handle.write(data[start : start + MiB])
                handle.flush()
                time.sleep(0.02)
        complete.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen = bytearray()
    entry = store.upload_file(
        path, store.key("20260101T000000Z", path.name), seen.extend, complete=complete, stop=stop
    )
    writer.join()

    assert bytes(seen) == data
    assert entry == multipart_entry(data, 5 * MiB)
    assert sent[:2] == [("1", False), ("2", False)]  # both full parts went up before the end
    assert store.verify_object(store.key("20260101T000000Z", path.name), entry) is None
    assert (
        store.client.get_object(Bucket=s3.primary, Key=store.key("20260101T000000Z", path.name))[
            "Body"
        ].read()
        == data
    )


def test_a_growing_file_abandoned_leaves_no_object_and_no_open_upload(s3, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    store = _growing_store(s3)
    path = tmp_path / "4001.dat.gz"
    path.write_bytes(b"x" * (6 * MiB))  # one part is sent, then pg_dump dies
    complete, stop = threading.Event(), threading.Event()
    threading.Timer(0.3, stop.set).start()
    key = store.key("20260101T000000Z", path.name)
    with pytest.raises(WorkDirectoryError, match="abandoned"):
        store.upload_file(path, key, complete=complete, stop=stop)
    assert store.client.list_objects_v2(Bucket=s3.primary).get("KeyCount") == 0
    assert store.client.list_multipart_uploads(Bucket=s3.primary).get("Uploads", []) == []


def test_a_small_growing_file_is_one_put_once_complete(s3, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    store = _growing_store(s3)
    path = tmp_path / "4002.dat"
    path.write_bytes(b"1\tone\n")
    complete = threading.Event()
    threading.Timer(0.2, lambda: (path.open("ab").write(b"2\ttwo\n\\.\n\n"), complete.set())).start()
    entry = store.upload_file(path, store.key("20260101T000000Z", path.name), complete=complete)
    whole = b"1\tone\n2\ttwo\n\\.\n\n"
    assert (entry.size, entry.parts, entry.sha256) == (len(whole), 1, hashlib.sha256(whole).hexdigest())
