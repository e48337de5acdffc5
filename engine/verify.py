"""Verify a stored backup without restoring it.

quick: SHA-256 of the stored bytes against the snapshot's record and the
       sidecar; needs no key and reads nothing but the file.
deep:  the same pass also decrypts, decompresses and walks the tar, checking
       every member against manifest.json, and reports what is inside.
Neither ever writes to the archive.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.age import AgeReader
from engine.archive.read_ahead import ReadAheadReader
from engine.archive.reader import ArchiveReport, scan_archive
from engine.compression import Compression, open_decompressor
from engine.dumps import DumpFile, verify_dump
from engine.errors import ArchiveError, EngineError, ObjectNotFound
from engine.hashing import parse_sidecar
from engine.progress import Progress, ProgressCallback, no_progress
from engine.secret import Secret
from storage.base import Storage

STORED_CHUNK = 1 << 20  # one read of the stored file
STORED_READ_AHEAD = 8  # chunks read and hashed ahead of the decryptor/decompressor
DECRYPTED_CHUNK = 1 << 20
DECRYPTED_READ_AHEAD = 8
PROGRESS_EVERY = 64 << 20  # bytes of the stored file between two progress reports


@dataclass
class VerifyResult:
    valid: bool
    checksum_match: bool
    sidecar_match: bool | None  # None: no sidecar found
    sha256: str
    size_bytes: int
    deep: bool
    errors: list[str] = field(default_factory=list)
    contents: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "checksum_match": self.checksum_match,
            "sidecar_match": self.sidecar_match,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "deep": self.deep,
            "errors": self.errors,
            **self.contents,
        }


def _sidecar(storage: Storage, key: str) -> str | None:
    try:
        with storage.open(f"{key}.sha256") as handle:
            return parse_sidecar(handle.read(4096).decode("ascii", "replace"))
    except (ObjectNotFound, ValueError):
        return None


def verify_backup(
    storage: Storage,
    key: str,
    expected_sha256: str,
    *,
    deep: bool = False,
    compression: Compression = "zstd",
    encrypted: bool = False,
    identities: Sequence[str] = (),
    passphrase: Secret | None = None,
    progress: ProgressCallback = no_progress,
) -> VerifyResult:
    try:
        total = storage.stat(key).size
    except ObjectNotFound:
        return VerifyResult(False, False, None, "", 0, deep, [f"archive {key} is missing"])
    errors: list[str] = []
    contents: dict[str, Any] = {}
    digest = hashlib.sha256()
    with storage.open(key) as raw:
        # The stored file is read and hashed on a thread of its own (the quick
        # check, in the same pass as the deep scan): hashlib and file reads
        # release the GIL, so it runs beside decompression and the tar scan.
        reader = ReadAheadReader(
            raw, STORED_CHUNK, STORED_READ_AHEAD, on_chunk=digest.update, name="verify-stored"
        )
        try:
            if deep:
                try:
                    contents, deep_errors = _deep_scan(
                        reader, compression, encrypted, identities, passphrase, progress, total
                    )
                    errors += deep_errors
                except ArchiveError as exc:  # includes DecryptionError
                    errors.append(str(exc))
            _drain(reader, progress, total)  # what the deep scan did not need: hashed all the same
        finally:
            reader.close()
    sha256 = digest.hexdigest()
    checksum_match = sha256 == expected_sha256
    if not checksum_match:
        errors.insert(0, "SHA-256 of the stored file does not match the snapshot record")
    sidecar = _sidecar(storage, key)
    sidecar_match = None if sidecar is None else sidecar == sha256
    if sidecar_match is False:
        errors.append("SHA-256 of the stored file does not match its .sha256 sidecar")
    progress(Progress("verified", reader.bytes_read, total))
    return VerifyResult(
        valid=not errors, checksum_match=checksum_match, sidecar_match=sidecar_match,
        sha256=sha256, size_bytes=reader.bytes_read, deep=deep, errors=errors, contents=contents,
    )  # fmt: skip


def _drain(reader: ReadAheadReader, progress: ProgressCallback, total: int) -> None:
    """Read to the end: the digest then covers the whole file."""
    # Counted as consumed here, not as read ahead by the reader's thread
    # (bytes_read), which may already be at the end before the first chunk.
    done = reported = 0
    while chunk := reader.read(STORED_CHUNK):
        done += len(chunk)
        if done - reported >= PROGRESS_EVERY:
            reported = done
            progress(Progress("verifying", done, total))


def _deep_scan(
    reader: ReadAheadReader,
    compression: Compression,
    encrypted: bool,
    identities: Sequence[str],
    passphrase: Secret | None,
    progress: ProgressCallback,
    total: int,
) -> tuple[dict[str, Any], list[str]]:
    def report_progress(_: Progress) -> None:
        # Called on this thread by the scan (the services' callbacks write to
        # the database, per thread); the figure is the stored file's, as in quick.
        progress(Progress("verifying", reader.bytes_read, total))

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="verify-dumps-") as dump_dir:
        source: Any = reader
        if encrypted:
            # Decryption gets a thread of its own too (ChaCha20 releases the
            # GIL): the decompressor's thread would otherwise do both.
            decryptor = AgeReader(reader, identities=identities, passphrase=passphrase)
            source = ReadAheadReader(decryptor, DECRYPTED_CHUNK, DECRYPTED_READ_AHEAD,
                                     name="verify-decrypt")  # fmt: skip
            stack.callback(source.close)
        try:
            report = scan_archive(
                open_decompressor(source, compression), report_progress, Path(dump_dir)
            )
        except Exception as exc:  # zstd/gzip raise their own error types on corrupt data
            if isinstance(exc, ArchiveError):
                raise
            return {}, [f"archive cannot be decompressed: {exc}"]
        summary = report.to_json()
        errors = summary.pop("errors")
        summary.pop("valid")
        summary["database_checks"], dump_errors = _check_dumps(report)
    summary["database_count"] = len(report.backup.get("databases", []))
    return summary, errors + dump_errors


def _check_dumps(report: ArchiveReport) -> tuple[list[dict[str, Any]], list[str]]:
    """Each dump's own structure (MySQL trailer, pg_dump TOC, ...), without a
    database server: a dump can be complete by checksum yet truncated by its tool."""
    checks: list[dict[str, Any]] = []
    errors: list[str] = []
    for entry in report.backup.get("databases", []):
        path = report.dump_files.get(entry.get("archive_name", ""))
        if path is None:
            errors.append(f"dump {entry.get('archive_name')!r} listed in backup.json is missing")
            continue
        try:
            checks.append({"archive_name": entry["archive_name"], "ok": True,
                           **verify_dump(None, DumpFile.from_json(entry, path))})  # fmt: skip
        except EngineError as exc:
            checks.append({"archive_name": entry["archive_name"], "ok": False})
            errors.append(str(exc))
    return checks, errors
