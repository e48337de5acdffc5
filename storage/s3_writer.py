"""The streaming AtomicWriter of S3Storage: a multipart upload to the final
key, fed part by part as the engine writes (a few parts in flight), made
visible by CompleteMultipartUpload at commit. Small objects (less than one
part) go up as a single PUT at commit, with their SHA-256 as metadata; a
multipart object gets its SHA-256 after completion (storage.s3_metadata:
the SHA-256 is only known at the end). Either way a HEAD checks size and
SHA-256 before commit returns; an object that fails that is removed.

Not resumable: the stream cannot be replayed. Resumable uploads start from a
finished file (S3Storage.upload_file)."""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from typing import TYPE_CHECKING

from engine.errors import ChecksumMismatch, StorageError
from storage.base import ObjectInfo, WriterLifecycle
from storage.s3_config import DEFAULT_PART_SIZE, MARKER_REFRESH_SECONDS, error_code
from storage.s3_metadata import SHA256_METADATA, set_sha256
from storage.s3_parts import PartSender, SentPart, completed_part, upload_checksum

if TYPE_CHECKING:
    from storage.s3 import S3Storage

log = logging.getLogger(__name__)


class S3Writer(WriterLifecycle):
    """An AtomicWriter for S3Storage; see storage.base.AtomicWriter."""

    def __init__(self, storage: S3Storage, key: str, marker: str) -> None:
        self._storage = storage
        self._key = key
        self._marker = marker
        self._object_key = storage.object_key(key)
        self._part_size = storage.config.part_size or DEFAULT_PART_SIZE
        self._buffer = bytearray()
        self._digest = hashlib.sha256()
        self._size = 0
        self._upload_id: str | None = None
        self._sender: PartSender | None = None
        self._parts: dict[int, SentPart] = {}
        self._next_part = 1
        self._state = "open"  # -> "committed" | "aborted"
        self._info: ObjectInfo | None = None
        storage.put_marker(marker, key, None)
        self._marker_written = time.monotonic()

    def write(self, data: bytes) -> int:
        self._require_open()
        view = memoryview(data).cast("B")
        # Copied into our buffer now: the caller may reuse its buffer.
        self._buffer += view
        self._digest.update(view)
        self._size += view.nbytes
        try:
            while len(self._buffer) >= self._part_size:
                part = bytes(self._buffer[: self._part_size])
                del self._buffer[: self._part_size]
                self._send(part)
        except BaseException:
            self.abort()
            raise
        return view.nbytes

    def _send(self, part: bytes) -> None:
        storage = self._storage
        if self._upload_id is None:
            response = storage.call(
                f"starting the upload of {self._key}",
                self._key,
                "create_multipart_upload",
                Key=self._object_key,
                **upload_checksum(storage.config),
            )
            self._upload_id = str(response["UploadId"])
            storage.put_marker(self._marker, self._key, self._upload_id)
            self._sender = PartSender(
                storage.client,
                storage.config,
                self._object_key,
                self._upload_id,
                f"{storage.config.where}: {self._key}",
            )
        elif time.monotonic() - self._marker_written > MARKER_REFRESH_SECONDS:
            storage.put_marker(self._marker, self._key, self._upload_id)
            self._marker_written = time.monotonic()
        if self._sender is None:
            raise StorageError(f"{storage.config.where}: {self._key}: no upload to send to")
        try:
            self._note(self._sender.send(self._next_part, part))
        except Exception as exc:
            raise self._fail(exc, f"uploading {self._key}") from exc
        self._next_part += 1

    def _note(self, acknowledged: list[SentPart]) -> None:
        for sent in acknowledged:
            self._parts[sent.part_number] = sent

    def _fail(self, exc: Exception, doing: str) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        return self._storage.error(exc, doing, self._key)

    def commit(self) -> ObjectInfo:
        if self._info is not None:
            return self._info  # committing twice (e.g. commit() inside `with`) is fine
        self._require_open()
        storage = self._storage
        digest = self._digest.hexdigest()
        published: list[str] = []  # what became visible, removed if the commit fails
        try:
            if not storage.marker_exists(self._marker):
                raise self._disappeared()
            if self._upload_id is None:
                body = bytes(self._buffer)
                storage.call(
                    f"writing {self._key}",
                    self._key,
                    "put_object",
                    Key=self._object_key,
                    Body=body,
                    ContentMD5=base64.b64encode(
                        hashlib.md5(body, usedforsecurity=False).digest()
                    ).decode(),
                    Metadata={SHA256_METADATA: digest},
                )
                published.append(self._key)
            else:
                self._complete()
                published.append(self._key)
                try:
                    set_sha256(storage, self._key, self._size, digest)
                except Exception as exc:
                    raise self._fail(exc, f"setting the SHA-256 of {self._key}") from exc
            self._info = storage.verify(self._key, digest)
            if self._info.size != self._size:
                raise ChecksumMismatch(
                    f"{storage.config.where}: {self._key} is {self._info.size} bytes after "
                    f"upload, expected {self._size}"
                )
            storage.drop_upload(self._marker, self._key, None)
            self._state = "committed"
        except BaseException:
            self._info = None
            self._unpublish(published)
            self.abort()
            raise
        self._buffer = bytearray()
        return self._info

    def _complete(self) -> None:
        if self._sender is None or self._upload_id is None:
            raise self._disappeared()
        try:
            if self._buffer:
                self._note(self._sender.send(self._next_part, bytes(self._buffer)))
                self._next_part += 1
            self._note(self._sender.drain())
        except Exception as exc:
            raise self._fail(exc, f"uploading {self._key}") from exc
        parts = [completed_part(n, p.etag, p.checksum) for n, p in sorted(self._parts.items())]
        try:
            self._storage.client.complete_multipart_upload(
                Bucket=self._storage.config.bucket,
                Key=self._object_key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
        except Exception as exc:
            if error_code(exc) in ("NoSuchUpload", "404"):
                raise self._disappeared() from exc
            raise self._fail(exc, f"completing {self._key}") from exc
        self._upload_id = None  # complete: nothing left to abort
        self._sender.close()

    def _unpublish(self, keys: list[str]) -> None:
        """A commit that failed after the object became visible: remove it,
        so a failed write never looks like a finished one."""
        storage = self._storage
        for key in keys:
            try:
                storage.client.delete_object(
                    Bucket=storage.config.bucket, Key=storage.object_key(key)
                )
            except Exception as exc:
                log.warning(
                    "%s: removing %s after a failed commit: %s",
                    storage.config.where, key, type(exc).__name__,
                )  # fmt: skip

    def _disappeared(self) -> StorageError:
        return StorageError(
            f"{self._storage.config.where}: the partial upload of {self._key} disappeared "
            "before commit (removed by sweep_partials?)"
        )

    def abort(self) -> None:
        """Abort the multipart upload and remove the marker. Does nothing after
        commit() or a previous abort()."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._buffer = bytearray()
        if self._sender is not None:
            self._sender.close()
        try:
            self._storage.drop_upload(self._marker, self._key, self._upload_id)
        except StorageError as exc:
            # The sweeper removes what an abort could not reach.
            log.warning("%s", exc)
