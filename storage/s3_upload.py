"""Resumable upload of a finished local file (the archive, already encrypted
when the policy says so) to S3.

Parts are read from the file at their offsets, so any part can be sent again
by any process. Each acknowledged part is recorded in the ledger (number,
size, checksum, ETag) at once; a later run with the same ledger, key and file
resumes the multipart upload: it asks the server which parts it holds
(ListParts) and, where the server cannot say (s3rver), trusts the ledger.
The object's SHA-256 goes in its metadata and is checked after completion."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ChecksumMismatch, StorageError
from storage.base import ObjectInfo
from storage.keys import partial_key, validate_key
from storage.retry import backoff_delay
from storage.s3_config import (
    MARKER_REFRESH_SECONDS,
    error_code,
    is_transient,
    is_unsupported,
    part_size_for,
)
from storage.s3_ledger import PartLedger, PartRecord, UploadState
from storage.s3_metadata import SHA256_METADATA
from storage.s3_parts import (
    PartSender,
    SentPart,
    completed_part,
    part_checksum,
    upload_checksum,
    uses_crc32,
)

if TYPE_CHECKING:
    from storage.s3 import Progress, S3Storage

log = logging.getLogger(__name__)
_HASH_BLOCK = 1024 * 1024
# Codes meaning the multipart upload is gone or unusable: it cannot resume.
_GONE_CODES = frozenset({"NoSuchUpload", "InvalidPart", "InvalidPartOrder", "EntityTooSmall"})


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class _Reporter:
    """Calls the caller's progress(bytes_done, bytes_total) on the thread that
    owns the upload loop; a raising callback is logged once and never breaks
    the upload."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self._progress = progress
        self._total = total
        self._failed = False

    def __call__(self, done: int) -> None:
        if self._progress is None:
            return
        try:
            self._progress(done, self._total)
        except Exception:
            if not self._failed:
                log.exception("progress callback failed; the upload goes on")
            self._failed = True


def upload_file(
    storage: S3Storage,
    path: Path,
    key: str,
    *,
    ledger: PartLedger | None = None,
    sha256: str | None = None,
    progress: Progress | None = None,
) -> ObjectInfo:
    validate_key(key)
    config = storage.config
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise StorageError(f"{config.where}: cannot read {path.name}: {exc.strerror}") from exc
    digest = sha256 or file_sha256(path)
    report = _Reporter(progress, size)
    minimum = config.part_size or part_size_for(0)
    part_size = max(minimum, part_size_for(size, minimum=minimum))
    if size <= part_size:
        return _put_small(storage, path, key, digest, report)

    state = ledger.pending(key) if ledger is not None else None
    done: dict[int, PartRecord] = {}
    if state is not None and (state.size, state.sha256) != (size, digest):
        log.info("%s: a different file for %s: starting over", config.where, key)
        _abandon(storage, ledger, state)
        state = None
    if state is not None and ledger is not None:
        acknowledged = _acknowledged(storage, ledger, state, path)
        if acknowledged is None:
            log.info(
                "%s: the upload of %s is gone from the server: starting over", config.where, key
            )
            _abandon(storage, ledger, state)
            state = None
        else:
            done = acknowledged
    if state is None:
        state = _start(storage, key, size, part_size, digest)
        if ledger is not None:
            ledger.start(state)

    count = math.ceil(size / state.part_size)
    missing = [n for n in range(1, count + 1) if n not in done]
    log.info("%s: uploading %s: %d of %d parts to send", config.where, key, len(missing), count)
    report(sum(p.size for p in done.values()))
    _send_missing(storage, path, state, missing, done, ledger, report)
    return _complete(storage, state, done, ledger)


def _put_small(
    storage: S3Storage, path: Path, key: str, digest: str, report: _Reporter
) -> ObjectInfo:
    """Less than one part: a single PUT, nothing to resume."""
    body = path.read_bytes()
    storage.call(
        f"writing {key}",
        key,
        "put_object",
        Key=storage.object_key(key),
        Body=body,
        ContentMD5=base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode(),
        Metadata={"sha256": digest},
    )
    report(len(body))
    return _check(storage, key, len(body), digest)


def _start(storage: S3Storage, key: str, size: int, part_size: int, digest: str) -> UploadState:
    response = storage.call(
        f"starting the upload of {key}",
        key,
        "create_multipart_upload",
        Key=storage.object_key(key),
        Metadata={SHA256_METADATA: digest},
        **upload_checksum(storage.config),
    )
    upload_id = str(response["UploadId"])
    marker = partial_key(key)
    storage.put_marker(marker, key, upload_id)
    return UploadState(key, upload_id, size, part_size, digest, marker, time.time())


def _part_range(state: UploadState, number: int) -> tuple[int, int]:
    offset = (number - 1) * state.part_size
    return offset, min(state.part_size, state.size - offset)


def _acknowledged(
    storage: S3Storage, ledger: PartLedger, state: UploadState, path: Path
) -> dict[int, PartRecord] | None:
    """The parts of STATE's upload the server holds and that match the file;
    None when the upload no longer exists."""
    recorded = ledger.parts(state.upload_id)
    kind = "crc32:" if uses_crc32(storage.config) else "md5:"
    if any(not record.checksum.startswith(kind) for record in recorded.values()):
        # The location's checksum setting changed since: the upload was
        # created for the other kind (CompleteMultipartUpload would refuse).
        log.info("%s: %s was started with other part checksums", storage.config.where, state.key)
        return None
    listed = _list_parts(storage, state)
    if listed is _GONE:
        return None
    if listed is None:
        return recorded  # the server cannot list parts: our records are all there is
    good: dict[int, PartRecord] = {}
    for number, (etag, size) in listed.items():
        if size != _part_range(state, number)[1]:
            continue
        record = recorded.get(number)
        if record is not None and record.etag.strip('"') == etag.strip('"'):
            good[number] = record
            continue
        # Acknowledged by the server but killed before we recorded it: the
        # ETag of an unencrypted part is its MD5, so check it against the file.
        offset, length = _part_range(state, number)
        data = _read_part(path, offset, length)
        if hashlib.md5(data, usedforsecurity=False).hexdigest() == etag.strip('"'):
            checksum = part_checksum(storage.config, data)[0]
            good[number] = PartRecord(number, length, checksum, etag)
            ledger.record(state.upload_id, number, length, checksum, etag)
    return good


_GONE: Any = object()


def _list_parts(storage: S3Storage, state: UploadState) -> Any:
    """{part: (etag, size)}, None if the server has no ListParts, _GONE if the upload is gone."""
    listed: dict[int, tuple[str, int]] = {}
    params: dict[str, Any] = {}
    while True:
        try:
            page = storage.client.list_parts(
                Bucket=storage.config.bucket,
                Key=storage.object_key(state.key),
                UploadId=state.upload_id,
                **params,
            )
        except Exception as exc:
            if is_unsupported(exc):
                return None
            if error_code(exc) in ("NoSuchUpload", "404"):
                return _GONE
            raise storage.error(exc, f"listing the parts of {state.key}", state.key) from exc
        for part in page.get("Parts", []):
            listed[int(part["PartNumber"])] = (str(part["ETag"]), int(part["Size"]))
        if not page.get("IsTruncated"):
            return listed
        params["PartNumberMarker"] = page["NextPartNumberMarker"]


def _read_part(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        data = os.pread(f.fileno(), length, offset)
    if len(data) != length:
        raise StorageError(f"{path.name} changed while it was being uploaded (short read)")
    return data


def _send_missing(
    storage: S3Storage,
    path: Path,
    state: UploadState,
    missing: list[int],
    done: dict[int, PartRecord],
    ledger: PartLedger | None,
    report: _Reporter,
) -> None:
    config = storage.config
    sender = PartSender(
        storage.client,
        config,
        storage.object_key(state.key),
        state.upload_id,
        f"{config.where}: {state.key}",
    )
    marker_written = time.monotonic()

    def note(acknowledged: list[SentPart]) -> None:
        for sent in acknowledged:
            done[sent.part_number] = PartRecord(
                sent.part_number, sent.size, sent.checksum, sent.etag
            )
            if ledger is not None:
                ledger.record(
                    state.upload_id, sent.part_number, sent.size, sent.checksum, sent.etag
                )
        if acknowledged:
            report(sum(p.size for p in done.values()))

    try:
        with open(path, "rb") as f:
            for number in missing:
                offset, length = _part_range(state, number)
                data = os.pread(f.fileno(), length, offset)
                if len(data) != length:
                    raise StorageError(f"{path.name} changed while it was being uploaded")
                note(sender.send(number, data))
                del data
                if time.monotonic() - marker_written > MARKER_REFRESH_SECONDS:
                    storage.put_marker(state.marker, state.key, state.upload_id)
                    marker_written = time.monotonic()
        note(sender.drain())
    except Exception as exc:
        # Record what did make it: a resume sends only the rest. The multipart
        # upload stays for that resume (or for the sweeper).
        note(sender.settle())
        if isinstance(exc, StorageError):
            raise
        raise storage.error(exc, f"uploading {state.key}", state.key) from exc
    finally:
        sender.close()


def _complete(
    storage: S3Storage, state: UploadState, done: dict[int, PartRecord], ledger: PartLedger | None
) -> ObjectInfo:
    parts = [completed_part(n, p.etag, p.checksum) for n, p in sorted(done.items())]
    attempts = storage.config.part_attempts
    for attempt in range(attempts):
        try:
            storage.client.complete_multipart_upload(
                Bucket=storage.config.bucket,
                Key=storage.object_key(state.key),
                UploadId=state.upload_id,
                MultipartUpload={"Parts": parts},
            )
            break
        except Exception as exc:
            # Some servers answer a vanished upload with a 500 (moto): ask ListParts.
            if error_code(exc) in _GONE_CODES or _list_parts(storage, state) is _GONE:
                # Cannot resume any more: abort, so no orphaned parts stay behind.
                _abandon(storage, ledger, state)
                raise StorageError(
                    f"{storage.config.where}: the multipart upload of {state.key} can no "
                    f"longer be completed ({error_code(exc)}); it was aborted, upload again"
                ) from exc
            if not is_transient(exc) or attempt == attempts - 1:
                raise storage.error(exc, f"completing {state.key}", state.key) from exc
            # A 500 with the upload still there (s3rver, right after a
            # killed writer's part): AWS's advice is to try again.
            log.warning("%s: completing %s: %s, retrying", storage.config.where, state.key,
                        error_code(exc) or type(exc).__name__)  # fmt: skip
            time.sleep(backoff_delay(attempt))
    if ledger is not None:
        ledger.forget(state.upload_id)
    storage.drop_upload(state.marker, state.key, None)
    return _check(storage, state.key, state.size, state.sha256)


def _check(storage: S3Storage, key: str, size: int, digest: str) -> ObjectInfo:
    """HEAD after completion: the size and the SHA-256 metadata must be ours."""
    info = storage.verify(key, digest)
    if info.size != size:
        raise ChecksumMismatch(
            f"{storage.config.where}: {key} is {info.size} bytes after upload, expected {size}"
        )
    return info


def _abandon(storage: S3Storage, ledger: PartLedger | None, state: UploadState) -> None:
    with contextlib.suppress(StorageError):
        storage.drop_upload(state.marker, state.key, state.upload_id)
    if ledger is not None:
        ledger.forget(state.upload_id)


def abort_upload(storage: S3Storage, key: str, ledger: PartLedger) -> bool:
    """Give up on KEY's pending upload (the caller decided not to resume)."""
    state = ledger.pending(key)
    if state is None:
        return False
    _abandon(storage, ledger, state)
    return True
