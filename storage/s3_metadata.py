"""The archive's SHA-256 on an S3 object, where a HEAD reads it.

A resumable upload knows the SHA-256 before it starts and puts it in the
object's metadata at CreateMultipartUpload. A streamed write (S3Writer) only
knows it at the end, when the object's metadata can no longer be given, so
after completion the object is copied onto itself, server side, with the
metadata replaced:

- up to `copy_max_size` (S3's CopyObject limit, 5 GiB): one CopyObject with
  MetadataDirective=REPLACE (moto and s3rver both do it; no byte leaves the
  server and the object stays whole under its key all along);
- above that: a multipart copy (UploadPartCopy of ranges of the object into
  a new multipart upload of the same key, the metadata given at its start),
  which moto has; s3rver answers NotImplemented, and has no CopyObject size
  limit, so one CopyObject is tried there;
- a server that can do neither fails the commit (the object is removed:
  a write whose SHA-256 no HEAD can check never looks finished). A sidecar
  object was the other way, but the upload copies the archive's sidecar
  beside it, and a sidecar cannot tell an object replaced since it was
  written from the one it describes: a check that passes a replaced object
  is worse than none. Every S3-compatible server we know has CopyObject."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from engine.errors import StorageError
from storage.retry import with_retries
from storage.s3_config import MIB, is_unsupported, part_size_for

if TYPE_CHECKING:
    from storage.s3 import S3Storage

log = logging.getLogger(__name__)

SHA256_METADATA = "sha256"  # x-amz-meta-sha256: the archive's (the snapshot's) SHA-256
# Server-side copy parts: big (few requests; nothing crosses the network),
# growing to fit 10,000 parts, never above what one CopyObject may copy.
COPY_PART_FLOOR = 256 * MIB


def set_sha256(storage: S3Storage, key: str, size: int, digest: str) -> str:
    """Give the completed object KEY (SIZE bytes) the SHA-256 DIGEST where a
    HEAD reads it. Returns how: "copy" or "multipart copy"."""
    limit = storage.config.copy_max_size
    if size > limit:
        try:
            _multipart_copy(storage, key, size, digest)
            return "multipart copy"
        except ClientError as exc:
            if not is_unsupported(exc):
                raise storage.error(exc, f"setting the SHA-256 of {key}", key) from exc
            log.info("%s: no UploadPartCopy: one CopyObject for %s", storage.config.where, key)
    try:
        _copy_onto_itself(storage, key, digest)
    except ClientError as exc:
        if is_unsupported(exc):
            raise StorageError(
                f"{storage.config.where}: cannot give {key} its SHA-256: the server has "
                "no CopyObject (a streamed write needs it; upload a finished file instead)"
            ) from exc
        raise storage.error(exc, f"setting the SHA-256 of {key}", key) from exc
    return "copy"


def _copy_onto_itself(storage: S3Storage, key: str, digest: str) -> None:
    object_key = storage.object_key(key)
    bucket = storage.config.bucket

    def copy() -> Any:
        return storage.client.copy_object(
            Bucket=bucket,
            Key=object_key,
            CopySource={"Bucket": bucket, "Key": object_key},
            MetadataDirective="REPLACE",
            Metadata={SHA256_METADATA: digest},
        )

    _retried(storage, key, copy)


def _multipart_copy(storage: S3Storage, key: str, size: int, digest: str) -> None:
    object_key = storage.object_key(key)
    bucket = storage.config.bucket
    client = storage.client
    part = min(storage.config.copy_max_size, max(part_size_for(size), COPY_PART_FLOOR))
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key=object_key, Metadata={SHA256_METADATA: digest}
    )["UploadId"]
    try:
        parts = []
        for number, offset in enumerate(range(0, size, part), start=1):
            last = min(offset + part, size) - 1

            def copy_part(number: int = number, offset: int = offset, last: int = last) -> Any:
                return client.upload_part_copy(
                    Bucket=bucket,
                    Key=object_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": bucket, "Key": object_key},
                    CopySourceRange=f"bytes={offset}-{last}",
                )

            response = _retried(storage, key, copy_part)
            parts.append({"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]})
        client.complete_multipart_upload(
            Bucket=bucket, Key=object_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        # The object itself is untouched until completion: only the copy goes.
        storage.abort_multipart(key, upload_id)
        raise


def _retried(storage: S3Storage, key: str, request: Any) -> Any:
    """REQUEST with the location's retries on transient failures; a
    ClientError the server meant (NotImplemented...) comes out as it is."""
    return with_retries(
        request,
        attempts=storage.config.part_attempts,
        what=f"{storage.config.where}: setting the SHA-256 of {key}",
    )


def stored_sha256(head: dict[str, Any]) -> str | None:
    """The SHA-256 an object carries in its metadata (from its HEAD)."""
    stored = head.get("Metadata", {}).get(SHA256_METADATA)
    return None if stored is None else str(stored)
