"""The pure helpers of the S3 adapter: checksums S3 stores, and multipart part sizes."""

from __future__ import annotations

import base64
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from pgrunbook.manifest import FileEntry
from pgrunbook.storage import MiB, TransferSettings, composite_checksum, expected_checksums

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
