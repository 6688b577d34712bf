"""The S3 adapter: one bucket, in one region, under one prefix, for one database.

Keys follow :mod:`pgrunbook.domain.layout`: ``s3://<bucket>/<prefix>/<database>/backups/<backup-id>/<file>``,
with ``manifest.json`` written last in the same folder.

Integrity: every upload carries its SHA-256 (``ChecksumAlgorithm=SHA256`` with the value in
``ChecksumSHA256``) so that S3 itself rejects a corrupted transfer, and S3 keeps it as the
object's stored checksum.  Files up to
``single_put_max`` go up in one PUT (stored checksum = SHA-256 of the whole file); bigger
ones in parts of ``part_size`` (stored checksum = the composite "SHA-256 of the part
SHA-256s", suffixed ``-N``), computed locally in the same single read of the file.  The
manifest records both the file's SHA-256 and the checksum S3 stores, so a later verification
can compare S3's stored checksums without downloading anything.

Cross-region copies use ``CopyObject``: a single-part object keeps its SHA-256 (S3 copies the
source's checksum), a multipart one is given ``ChecksumAlgorithm=SHA256`` (S3 recomputes a
whole-object SHA-256 on the copy); above ``single_copy_max`` (S3's 5 GiB limit), a
multipart copy with the same part boundaries as the upload, which reproduces the composite.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from pgrunbook.domain.errors import (
    BackupIncomplete,
    BucketUnavailable,
    ChecksumMismatch,
    TransientStorageError,
    WorkDirectoryError,
)
from pgrunbook.domain.layout import Layout
from pgrunbook.domain.manifest import FileEntry

MiB = 1024 * 1024
READ_CHUNK = 4 * MiB
FOLLOW_POLL_S = 0.05  # how often a growing file is looked at again


@dataclass(frozen=True)
class TransferSettings:
    single_put_max: int = 64 * MiB
    part_size: int = 64 * MiB
    single_copy_max: int = 5 * 1024 * MiB
    concurrency: int = 8

    def part_size_for(self, size: int) -> int:
        # S3 allows 10,000 parts: grow the part size for very large files.
        return max(self.part_size, -(-size // 9_000))


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def composite_checksum(part_digests: list[bytes]) -> str:
    return f"{b64(hashlib.sha256(b''.join(part_digests)).digest())}-{len(part_digests)}"


def expected_checksums(entry: FileEntry) -> set[str]:
    """Stored checksums S3 may legitimately report for a copy of ``entry``.

    A single-part object (any upload up to ``single_put_max``, any copy up to 5 GiB) stores
    the SHA-256 of the whole file; a multipart one stores the composite.  Some S3
    implementations omit the ``-N`` suffix, so both spellings are accepted.
    """
    whole = b64(bytes.fromhex(entry.sha256))
    accepted = {whole, entry.s3_checksum, entry.s3_checksum.split("-")[0]}
    return accepted


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip().rstrip(":")
    return " ".join(str(exc).split()) or type(exc).__name__


# Called with every S3 client pgrunbook creates, so that instrumentation (and the tests'
# fault injection: an S3 error in the middle of an upload) can register botocore handlers.
CLIENT_HOOKS: list[Callable[[Any], None]] = []


_session_lock = threading.Lock()
_session: boto3.session.Session | None = None


def _shared_session() -> boto3.session.Session:
    """One boto3 session per process: a new session reloads every service model (~0.1 s),
    a client from an existing one takes milliseconds.  Sessions are not thread-safe, so
    clients are made under a lock; clients themselves are."""
    global _session
    if _session is None:
        _session = boto3.session.Session()
    return _session


@contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """Any S3 failure (an error response, a dropped connection) as a named pgrunbook error."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise TransientStorageError(f"{what} failed: {_describe(exc)}") from None


# Over HTTPS the payload is not hashed a second time for the SigV4 signature: every upload
# carries its own SHA-256 in a signed ``x-amz-checksum-sha256`` header, which S3 checks, and
# TLS protects the rest.  (botocore does this by itself only for checksums it computes; for a
# checksum the caller supplies it would SHA-256 every byte again.)  A plain-HTTP endpoint, a
# local emulator say, keeps signed payloads.
UNSIGNED_PAYLOAD = Config(s3={"payload_signing_enabled": False})


def make_client(region: str, concurrency: int = 8) -> Any:
    config = Config(
        region_name=region,
        retries={"max_attempts": 6, "mode": "standard"},
        max_pool_connections=max(10, concurrency * 2),
    )
    with _session_lock:
        client = _shared_session().client("s3", config=config.merge(UNSIGNED_PAYLOAD))
        if not client.meta.endpoint_url.startswith("https://"):  # rare: a local emulator, say
            client = _shared_session().client("s3", config=config)
    for hook in CLIENT_HOOKS:
        hook(client)
    return client


class ObjectStore:
    def __init__(
        self,
        bucket: str,
        region: str,
        prefix: str,
        database: str,
        *,
        client: Any = None,
        transfer: TransferSettings | None = None,
    ):
        self.bucket = bucket
        self.region = region
        self.prefix = prefix.strip("/")
        self.database = database
        self.layout = Layout(self.prefix, database)
        self.transfer = transfer or TransferSettings()
        self.client = client or make_client(region, self.transfer.concurrency)

    # -- naming --------------------------------------------------------------------------

    @property
    def backups_prefix(self) -> str:
        return self.layout.backups_prefix

    def backup_prefix(self, backup_id: str) -> str:
        return self.layout.backup_prefix(backup_id)

    def key(self, backup_id: str, name: str) -> str:
        return self.layout.backup_key(backup_id, name)

    def manifest_key(self, backup_id: str) -> str:
        return self.layout.manifest_key(backup_id)

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.backups_prefix} ({self.region})"

    # -- bucket --------------------------------------------------------------------------

    def check_bucket(self) -> None:
        """The bucket exists and this database's prefix can be listed: a one-key listing, not
        HeadBucket, which needs the right to list the whole bucket (a deployed job's grant
        reaches only ``<prefix>/<database>/``)."""
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.layout.root}/", MaxKeys=1)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            reason = {
                "404": "does not exist",
                "NoSuchBucket": "does not exist",
                "403": "access denied",
                "AccessDenied": "access denied",
            }.get(code, _describe(exc))
            raise BucketUnavailable(f"bucket {self.bucket} in {self.region}: {reason}") from None
        except BotoCoreError as exc:
            raise BucketUnavailable(f"bucket {self.bucket} in {self.region}: {_describe(exc)}") from None

    # -- writing -------------------------------------------------------------------------

    def upload_file(
        self,
        path: Path,
        key: str,
        on_chunk: Callable[[bytes], None] | None = None,
        *,
        complete: threading.Event | None = None,
        stop: threading.Event | None = None,
    ) -> FileEntry:
        """Upload one file, reading it once; returns its manifest entry.  ``on_chunk`` sees
        every byte read, in order (the COPY-text fingerprint of a dump's data file).

        With ``complete``, the file is still being written (a table's data that pg_dump is
        dumping): its parts go up as they fill, and the end of the file is its end only once
        ``complete`` is set; ``stop`` set meanwhile abandons the upload
        (:class:`~pgrunbook.domain.errors.WorkDirectoryError`).  A growing file's parts are
        ``part_size`` (its final size is not known), enough for 9,000 parts of 64 MiB."""
        growing = complete is not None and not complete.is_set()
        part_size = self.transfer.part_size if growing else self.transfer.part_size_for(path.stat().st_size)
        whole = hashlib.sha256()
        buffer = bytearray()
        part_digests: list[bytes] = []
        size = 0
        try:
            with path.open("rb") as handle, ExitStack() as stack:
                parts: list[dict[str, Any]] | None = None
                upload_id = ""
                while True:
                    ended = complete is None or complete.is_set()  # before the read: then EOF is the end
                    chunk = handle.read(min(READ_CHUNK, part_size))
                    if not chunk:
                        if ended:
                            break
                        if stop is not None and stop.is_set():
                            raise WorkDirectoryError(
                                f"the upload of {path.name} was abandoned while it was written"
                            )
                        assert complete is not None
                        complete.wait(FOLLOW_POLL_S)
                        continue
                    size += len(chunk)
                    whole.update(chunk)
                    if on_chunk is not None:
                        on_chunk(chunk)
                    buffer += chunk
                    while len(buffer) >= part_size and (
                        parts is not None or size > self.transfer.single_put_max
                    ):
                        if parts is None:
                            upload_id, parts = stack.enter_context(self._multipart(key))
                        part_digests.append(
                            self._upload_part(key, upload_id, parts, bytes(buffer[:part_size]))
                        )
                        del buffer[:part_size]
                if parts is None and size <= self.transfer.single_put_max:
                    data = bytes(buffer)
                    digest = hashlib.sha256(data).digest()
                    self.client.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=data,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=b64(digest),
                    )
                    return FileEntry(path.name, size, digest.hex(), b64(digest), 1)
                if parts is None:
                    upload_id, parts = stack.enter_context(self._multipart(key))
                while buffer:
                    part_digests.append(self._upload_part(key, upload_id, parts, bytes(buffer[:part_size])))
                    del buffer[:part_size]
                # leaving the block completes the multipart upload (or aborts it on an error)
        except (ClientError, BotoCoreError) as exc:
            raise TransientStorageError(f"S3 upload of {self.uri(key)} failed: {_describe(exc)}") from None
        return FileEntry(
            path.name, size, whole.hexdigest(), composite_checksum(part_digests), len(part_digests), part_size
        )

    def _upload_part(self, key: str, upload_id: str, parts: list[dict[str, Any]], data: bytes) -> bytes:
        digest = hashlib.sha256(data).digest()
        number = len(parts) + 1
        response = self.client.upload_part(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=b64(digest),
        )
        parts.append({"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": b64(digest)})
        return digest

    @contextmanager
    def _multipart(self, key: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """A multipart upload of ``key``: the caller sends the parts and lists them; the upload
        is completed when the block ends, aborted (best effort) if anything fails in it."""
        upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256"
        )["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            yield upload_id, parts
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception:  # noqa: S110 - best effort; the original outcome is what matters
                pass
            raise

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/json") -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=b64(hashlib.sha256(data).digest()),
                ContentType=content_type,
            )
        except (ClientError, BotoCoreError) as exc:
            raise TransientStorageError(f"S3 write of {self.uri(key)} failed: {_describe(exc)}") from None

    def copy_from(self, source: ObjectStore, source_key: str, key: str, entry: FileEntry) -> None:
        """Server-side copy of one backup file from ``source`` (possibly another region)."""
        copy_source = {"Bucket": source.bucket, "Key": source_key}
        try:
            if entry.size <= self.transfer.single_copy_max:
                # A single-part source keeps its whole-file SHA-256 on the copy (S3 copies the
                # source's checksum by default); a multipart one asks S3 for a whole-object
                # SHA-256.  Either way verify_object checks what the copy stores.
                recompute = {"ChecksumAlgorithm": "SHA256"} if entry.parts > 1 else {}
                self.client.copy_object(
                    Bucket=self.bucket, Key=key, CopySource=copy_source, MetadataDirective="COPY", **recompute
                )
                return
            self._copy_multipart(copy_source, key, entry)
        except (ClientError, BotoCoreError) as exc:
            raise TransientStorageError(
                f"S3 copy of {source.uri(source_key)} to {self.uri(key)} failed: {_describe(exc)}"
            ) from None

    def _copy_multipart(self, copy_source: dict[str, str], key: str, entry: FileEntry) -> None:
        # Reuse the upload's part boundaries when there were parts, so the composite matches.
        part_size = entry.part_size if entry.parts > 1 else self.transfer.part_size_for(entry.size)
        with self._multipart(key) as (upload_id, parts):
            for number, start in enumerate(range(0, entry.size, part_size), start=1):
                end = min(start + part_size, entry.size) - 1
                response = self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=copy_source,
                    CopySourceRange=f"bytes={start}-{end}",
                )
                result = response["CopyPartResult"]
                part = {"PartNumber": number, "ETag": result["ETag"]}
                if result.get("ChecksumSHA256"):
                    part["ChecksumSHA256"] = result["ChecksumSHA256"]
                parts.append(part)

    # -- object lock -----------------------------------------------------------------------

    def lock_mode(self, requested: str) -> str | None:
        """The Object Lock mode to apply: ``requested`` is off, governance, compliance or auto
        (governance when the bucket has Object Lock enabled, else none)."""
        if requested == "off":
            return None
        if requested in ("governance", "compliance"):
            return requested.upper()
        try:
            config = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError:
            return None  # ObjectLockConfigurationNotFoundError: a bucket without Object Lock
        except BotoCoreError as exc:
            raise TransientStorageError(
                f"reading the Object Lock setting of {self.bucket} failed: {exc}"
            ) from None
        enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        return "GOVERNANCE" if enabled else None

    def lock(self, keys: Iterable[str], mode: str, until: datetime) -> list[str]:
        """Lock each object (its current version) until ``until``; returns the failures."""
        keys = list(keys)

        def one(key: str) -> str | None:
            try:
                self.client.put_object_retention(
                    Bucket=self.bucket, Key=key, Retention={"Mode": mode, "RetainUntilDate": until}
                )
            except (ClientError, BotoCoreError) as exc:
                return f"{self.uri(key)}: {_describe(exc)}"
            return None

        with ThreadPoolExecutor(max_workers=max(1, min(self.transfer.concurrency, len(keys) or 1))) as pool:
            return [problem for problem in pool.map(one, keys) if problem]

    def abort_uploads(self, prefix: str) -> int:
        """Abort the multipart uploads left open under ``prefix`` (a killed run's growing file:
        nothing that looks like an object, but S3 keeps and bills its parts); returns how
        many.  Best effort: the bucket's lifecycle rule aborts them after two days anyway."""
        aborted = 0
        with s3_errors(f"S3 listing of the open uploads in {self.uri(prefix)}"):
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
        return aborted

    def delete_keys(self, keys: Iterable[str]) -> int:
        batch: list[str] = []
        deleted = 0
        for key in keys:
            batch.append(key)
            if len(batch) == 1000:
                deleted += self._delete_batch(batch)
                batch = []
        if batch:
            deleted += self._delete_batch(batch)
        return deleted

    def _delete_batch(self, keys: list[str]) -> int:
        with s3_errors(f"S3 delete in {self.uri()}"):
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )
        return len(keys) - len(response.get("Errors", []))

    # -- reading -------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise TransientStorageError(f"S3 read of {self.uri(key)} failed: {_describe(exc)}") from None
        except BotoCoreError as exc:
            raise TransientStorageError(f"S3 read of {self.uri(key)} failed: {_describe(exc)}") from None

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise TransientStorageError(f"S3 head of {self.uri(key)} failed: {_describe(exc)}") from None
        except BotoCoreError as exc:
            raise TransientStorageError(f"S3 head of {self.uri(key)} failed: {_describe(exc)}") from None

    def verify_object(self, key: str, entry: FileEntry) -> str | None:
        """Compare a stored object with its manifest entry; returns a problem or None."""
        head = self.head(key)
        if head is None:
            return f"{self.uri(key)} is missing"
        if int(head["ContentLength"]) != entry.size:
            return f"{self.uri(key)} has {head['ContentLength']} bytes, the manifest says {entry.size}"
        stored = head.get("ChecksumSHA256")
        if not stored:
            return f"{self.uri(key)} has no stored SHA-256 checksum"
        if stored not in expected_checksums(entry):
            return f"{self.uri(key)} has SHA-256 {stored}, the manifest says {entry.sha256}"
        return None

    def download_file(self, key: str, dest: Path, entry: FileEntry) -> None:
        """Download and check size and SHA-256; a mismatch names the object and stops."""
        digest = hashlib.sha256()
        size = 0
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BackupIncomplete(f"{self.uri(key)} is missing: the backup is incomplete") from None
            raise TransientStorageError(f"S3 download of {self.uri(key)} failed: {_describe(exc)}") from None
        except BotoCoreError as exc:
            raise TransientStorageError(f"S3 download of {self.uri(key)} failed: {_describe(exc)}") from None
        try:
            with dest.open("wb") as handle:
                for chunk in body.iter_chunks(READ_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
        except (ClientError, BotoCoreError) as exc:
            raise TransientStorageError(f"S3 download of {self.uri(key)} failed: {_describe(exc)}") from None
        except OSError as exc:
            dest.unlink(missing_ok=True)
            raise WorkDirectoryError(
                f"cannot write {dest.name} ({entry.size:,} bytes) to the work directory {dest.parent}: "
                f"{exc.strerror or exc}"
            ) from None
        if size != entry.size or digest.hexdigest() != entry.sha256:
            dest.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"checksum mismatch: {self.uri(key)} has {size} bytes with SHA-256 {digest.hexdigest()[:16]}..., "
                f"the manifest says {entry.size} bytes with {entry.sha256[:16]}...",
                key,
            )

    def list_backup_ids(self) -> list[str]:
        ids: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.backups_prefix, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    ids.append(common["Prefix"][len(self.backups_prefix) :].rstrip("/"))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket", "404"):
                raise BucketUnavailable(f"bucket {self.bucket} in {self.region}: does not exist") from None
            raise TransientStorageError(f"S3 listing of {self.describe()} failed: {_describe(exc)}") from None
        except BotoCoreError as exc:
            raise TransientStorageError(f"S3 listing of {self.describe()} failed: {_describe(exc)}") from None
        return sorted(ids)

    def list_keys(self, prefix: str, *, start_after: str | None = None) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        extra = {"StartAfter": start_after} if start_after else {}
        with s3_errors(f"S3 listing of {self.uri(prefix)}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, **extra):
                yield from page.get("Contents", [])
