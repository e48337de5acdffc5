"""An S3 (or S3-compatible) bucket behind the Storage protocol.

Writes are multipart uploads to the final key, so nothing is visible before
CompleteMultipartUpload (small objects: one PUT at commit). Beside each
write in progress lies a small marker object "<dir>/.partial-<token>-<name>"
holding the upload id: sweep_partials and discard_partials find dead writes
through it on every server, including those without ListMultipartUploads
(s3rver), and commit refuses to publish a write whose marker was swept.

The main off-site path is upload_file() (storage.s3_upload): a finished
local archive goes up resumably, part by part, recorded in a PartLedger."""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import ClientError

from engine.errors import ChecksumMismatch, ObjectNotFound, StorageError
from storage.base import ObjectInfo
from storage.keys import is_partial_name, is_partial_of, partial_key, validate_key, validate_prefix
from storage.retry import with_retries
from storage.s3_config import S3Config, error_code, is_unsupported, make_client, s3_error
from storage.s3_ledger import PartLedger
from storage.s3_metadata import stored_sha256
from storage.s3_reader import open_stream
from storage.s3_upload import upload_file
from storage.s3_writer import S3Writer

log = logging.getLogger(__name__)

_HASH_BLOCK = 1024 * 1024
Progress = Callable[[int, int], None]


class S3Storage:
    def __init__(self, config: S3Config, client: Any = None) -> None:
        self.config = config
        self.name = config.name
        self.client = client if client is not None else make_client(config)

    # -- names -----------------------------------------------------------------

    def object_key(self, key: str) -> str:
        return self.config.prefix + key

    def error(self, exc: BaseException, doing: str, key: str = "") -> StorageError:
        return s3_error(self.config, exc, doing, key)

    def call(self, doing: str, key: str, operation: str, **params: Any) -> Any:
        """One S3 request, transient failures retried, errors translated."""
        method = getattr(self.client, operation)
        try:
            return with_retries(
                lambda: method(Bucket=self.config.bucket, **params),
                attempts=self.config.part_attempts,
                what=f"{self.config.where}: {doing}",
            )
        except Exception as exc:
            if isinstance(exc, StorageError):
                raise
            raise self.error(exc, doing, key) from exc

    # -- writing ---------------------------------------------------------------

    def open_writer(self, key: str) -> S3Writer:
        validate_key(key)
        return S3Writer(self, key, partial_key(key))

    def upload_file(
        self,
        path: Path,
        key: str,
        *,
        ledger: PartLedger | None = None,
        sha256: str | None = None,
        progress: Progress | None = None,
    ) -> ObjectInfo:
        """Copy a finished local file to KEY, resuming an upload the ledger
        knows of (see storage.s3_upload.upload_file)."""
        return upload_file(self, Path(path), key, ledger=ledger, sha256=sha256, progress=progress)

    def put_marker(self, marker: str, key: str, upload_id: str | None) -> None:
        body = json.dumps({"key": key, "upload_id": upload_id, "written": time.time()}).encode()
        self.call(
            f"writing the marker of {key}",
            key,
            "put_object",
            Key=self.object_key(marker),
            Body=body,
        )

    def marker_exists(self, marker: str) -> bool:
        try:
            self.client.head_object(Bucket=self.config.bucket, Key=self.object_key(marker))
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self.error(exc, "reading a partial marker") from exc
        return True

    def drop_upload(self, marker: str | None, key: str, upload_id: str | None) -> None:
        """Abort a multipart upload and remove its marker; quiet about what is gone."""
        if upload_id:
            self.abort_multipart(key, upload_id)
        if marker:
            try:
                self.client.delete_object(Bucket=self.config.bucket, Key=self.object_key(marker))
            except ClientError as exc:
                log.warning(
                    "%s: removing the marker of %s: %s", self.config.where, key, error_code(exc)
                )

    def abort_multipart(self, key: str, upload_id: str) -> bool:
        """Abort; False where the server cannot (s3rver keeps the parts on disk)."""
        try:
            self.client.abort_multipart_upload(
                Bucket=self.config.bucket, Key=self.object_key(key), UploadId=upload_id
            )
        except ClientError as exc:
            if error_code(exc) in ("NoSuchUpload", "404"):
                return True
            if is_unsupported(exc):
                log.warning("%s: the server cannot abort multipart uploads", self.config.where)
                return False
            raise self.error(exc, f"aborting the upload of {key}", key) from exc
        return True

    # -- reading ---------------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        validate_key(key)
        head = self._head(key)
        stream = open_stream(
            self.client,
            self.config,
            key,
            self.object_key(key),
            int(head["ContentLength"]),
            str(head["ETag"]),
        )
        return stream  # type: ignore[return-value]

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        head = self._head(key)
        return ObjectInfo(key=key, size=int(head["ContentLength"]), modified=head["LastModified"])

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def verify(self, key: str, sha256: str, *, deep: bool = False) -> ObjectInfo:
        """Check the object against the archive's SHA-256: its metadata (HEAD),
        and with deep=True the bytes themselves (a full read-back)."""
        validate_key(key)
        head = self._head(key)
        stored = stored_sha256(head)
        if stored is not None and stored != sha256:
            raise ChecksumMismatch(
                f"{self.config.where}: {key} has SHA-256 {stored} in its metadata, "
                f"expected {sha256}"
            )
        if deep:
            digest = hashlib.sha256()
            with self.open(key) as stream:
                while block := stream.read(_HASH_BLOCK):
                    digest.update(block)
            if digest.hexdigest() != sha256:
                raise ChecksumMismatch(
                    f"{self.config.where}: {key} reads back with SHA-256 {digest.hexdigest()}, "
                    f"expected {sha256}"
                )
        elif stored is None:
            raise ChecksumMismatch(
                f"{self.config.where}: {key} has no SHA-256 in its metadata (use deep=True)"
            )
        return ObjectInfo(key=key, size=int(head["ContentLength"]), modified=head["LastModified"])

    def head(self, key: str) -> dict[str, Any]:
        validate_key(key)
        return self._head(key)

    def _head(self, key: str) -> dict[str, Any]:
        try:
            return self.call(f"reading {key}", key, "head_object", Key=self.object_key(key))
        except ObjectNotFound:
            # A HEAD has no body: a missing bucket is a bare 404 too. Only a
            # miss pays for the second request that tells them apart.
            self.call(f"reading {key}", "", "head_bucket")
            raise

    # -- listing and removing ------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        found = []
        for key, item in self._objects(prefix):
            try:
                validate_key(key)
            except ValueError:
                continue  # partial markers, and names no key can take
            found.append(ObjectInfo(key=key, size=int(item["Size"]), modified=item["LastModified"]))
        found.sort(key=lambda info: info.key)
        return iter(found)

    def _objects(self, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key without the location's prefix, listing entry) of every object."""
        token: str | None = None
        cut = len(self.config.prefix)
        while True:
            params: dict[str, Any] = {"Prefix": self.object_key(prefix)}
            if token:
                params["ContinuationToken"] = token
            page = self.call(f"listing {prefix!r}", "", "list_objects_v2", **params)
            for item in page.get("Contents", []):
                yield item["Key"][cut:], item
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def delete(self, key: str) -> None:
        validate_key(key)
        self._head(key)  # S3 deletes silently; the protocol says ObjectNotFound
        self.call(f"deleting {key}", key, "delete_object", Key=self.object_key(key))

    def sweep_partials(self, older_than_seconds: float) -> builtins.list[str]:
        """Remove dead writes: markers not refreshed for OLDER_THAN_SECONDS
        (with their multipart uploads), then multipart uploads the server lists
        that are that old and that no live marker claims."""
        if older_than_seconds < 0:
            raise ValueError("older_than_seconds must not be negative")
        cutoff = time.time() - older_than_seconds
        removed: builtins.list[str] = []
        live_uploads: set[str] = set()
        for marker, item, content in self._markers(""):
            upload_id = content.get("upload_id")
            if item["LastModified"].timestamp() > cutoff:
                if upload_id:
                    live_uploads.add(upload_id)
                continue
            self.drop_upload(marker, str(content.get("key", "")), upload_id)
            removed.append(marker)
        removed += self.sweep_multipart_uploads(older_than_seconds, keep=live_uploads)
        return sorted(removed)

    def sweep_multipart_uploads(
        self, older_than_seconds: float, keep: set[str] | None = None
    ) -> builtins.list[str]:
        """Abort multipart uploads initiated more than OLDER_THAN_SECONDS ago
        (orphans of a crashed process whose marker is gone too). Returns
        "<key> (upload <id>)" for each; [] where the server cannot list them."""
        cutoff = time.time() - older_than_seconds
        aborted: builtins.list[str] = []
        params: dict[str, Any] = {"Prefix": self.config.prefix}
        while True:
            try:
                page = self.client.list_multipart_uploads(Bucket=self.config.bucket, **params)
            except ClientError as exc:
                if is_unsupported(exc):
                    return aborted  # s3rver: the markers are all we have
                raise self.error(exc, "listing multipart uploads") from exc
            for upload in page.get("Uploads", []):
                if upload["UploadId"] in (keep or set()):
                    continue
                if upload["Initiated"].timestamp() > cutoff:
                    continue
                key = upload["Key"][len(self.config.prefix) :]
                if self.abort_multipart(key, upload["UploadId"]):
                    aborted.append(f"{key} (upload {upload['UploadId']})")
            if not page.get("IsTruncated"):
                return aborted
            params["KeyMarker"] = page.get("NextKeyMarker", "")
            params["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    def discard_partials(self, key: str) -> builtins.list[str]:
        validate_key(key)
        directory = key.rpartition("/")[0]
        removed: builtins.list[str] = []
        for marker, _item, content in self._markers(f"{directory}/" if directory else ""):
            if is_partial_of(marker, key):
                self.drop_upload(marker, key, content.get("upload_id"))
                removed.append(marker)
        return sorted(removed)

    def _markers(self, prefix: str) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
        for name, item in list(self._objects(prefix)):
            if not is_partial_name(name.rpartition("/")[2]):
                continue
            try:
                body = self.client.get_object(Bucket=self.config.bucket, Key=item["Key"])["Body"]
                content = json.loads(body.read())
            except ClientError:
                continue  # removed meanwhile (its writer finished)
            except ValueError:
                content = {}  # not ours, or torn: still a dead partial name
            yield name, item, content

    def free_bytes(self) -> int | None:
        return None  # a bucket has no meaningful free space
