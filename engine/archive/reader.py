"""Deep verification of an archive's tar stream: every member is checked
against manifest.json, in one pass and in memory that does not grow with
the number of members.

The stream is read once, front to back (it can come straight out of a
decryptor and decompressor), by the lean parser and read-ahead reader that
restore uses too (tar_reader.py, read_ahead.py): a thread decompresses while
this one parses headers and hashes small members, and a third hashes large
members (hash_thread.py), all straight from the read-ahead chunks.
manifest.json comes last, so what each member looked like is written to a
temporary file as we go (member_log.py), manifest.json's bytes are spooled
to another, and the two are then compared in one streaming pass
(manifest_check.py, reading the manifest with manifest_stream.py).

Every member also goes through restore's own member checks
(engine.restore.checks.MemberChecks, as a restore of every volume), so
"valid" means "restorable": the first member restore would refuse is
reported with restore's words. Those checks keep no record per file, so the
one that needs earlier members (a hardlink's source is an earlier regular
file) is settled after the pass, from the member log."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from engine.archive.hash_thread import HashThread, PendingDigest
from engine.archive.layout import BACKUP_JSON, DATABASES_DIR, MANIFEST_JSON
from engine.archive.manifest_check import VolumeSummary, compare_with_manifest
from engine.archive.manifest_stream import ManifestFormatError
from engine.archive.member_log import MemberLog, duplicate_names
from engine.archive.read_ahead import Source
from engine.archive.tar_reader import Member, TarReader
from engine.errors import ArchiveError, DecryptionError
from engine.progress import Progress, ProgressCallback, no_progress
from engine.restore.checks import MemberChecks, check_hardlink_source, parse_backup_json

READ_CHUNK = 1 << 20  # read-ahead chunk of the tar stream
READ_AHEAD = 16  # chunks decompressed ahead of the parser
LARGE_MEMBER = 64 << 10  # members this large are hashed on the hash thread
MAX_BACKUP_JSON = 1 << 30
PROGRESS_SECONDS = 0.5
_DATABASES_PREFIX = f"{DATABASES_DIR}/"


@dataclass
class ArchiveReport:
    valid: bool
    errors: list[str] = field(default_factory=list)
    backup: dict[str, Any] = field(default_factory=dict)
    volumes: dict[str, VolumeSummary] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)
    config_files: list[str] = field(default_factory=list)
    file_count: int = 0
    total_bytes: int = 0
    dump_files: dict[str, Path] = field(default_factory=dict)  # member -> copy (dump_dir)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "errors": self.errors[:50],
            "volumes": {name: vars(v) for name, v in sorted(self.volumes.items())},
            "databases": self.databases,
            "config_files": self.config_files,
            "file_count": self.file_count,
            "total_bytes": self.total_bytes,
        }


def scan_archive(
    stream: BinaryIO, progress: ProgressCallback = no_progress, dump_dir: Path | None = None
) -> ArchiveReport:
    """Read the whole archive, hash every file, compare with the manifest.
    With DUMP_DIR, database dumps are also copied there (report.dump_files),
    so their content can be checked after the scan. An unreadable, truncated
    or inconsistent archive is reported in report.errors; only a failed
    decryption (wrong key, tampered data) raises, as DecryptionError.
    PROGRESS is called on this thread, at most every PROGRESS_SECONDS."""
    report = ArchiveReport(valid=False)
    with MemberLog() as log, _Scanner(stream, log, report, dump_dir, progress) as scanner:
        try:
            scanner.run()
        except DecryptionError:
            raise
        except (ArchiveError, OSError, ValueError) as exc:
            report.errors.append(f"archive is unreadable or truncated: {exc}")
            return report
        report.errors += [f"duplicate member {name!r}" for name in duplicate_names(log)]
        if (refusal := scanner.refusal()) is not None:
            report.errors.append(refusal)
        report.errors = list(dict.fromkeys(report.errors))  # a duplicate is also a refusal
        if scanner.manifest_file is None:
            report.errors.append("manifest.json is missing (archive truncated?)")
            return report
        try:
            errors, summary = compare_with_manifest(scanner.manifest_file, log)
        except ManifestFormatError as exc:
            report.errors.append(str(exc))
            return report
    report.errors += errors
    report.volumes, report.databases = summary.volumes, summary.sorted_databases()
    report.config_files, report.file_count = summary.config_files, summary.file_count
    report.total_bytes = summary.total_bytes
    report.valid = not report.errors
    return report


class _Scanner:
    """The pass over the tar stream. Each member's record goes to the log in
    tar order (once its digest is known), manifest.json to a temporary file.
    Three threads work together: the read-ahead reader's (decompression, or
    reading), this one (headers, small members' hashes) and the hash
    thread's (large members' hashes)."""

    def __init__(
        self,
        stream: BinaryIO,
        log: MemberLog,
        report: ArchiveReport,
        dump_dir: Path | None,
        progress: ProgressCallback,
    ) -> None:
        self.log = log
        self.report = report
        self.dump_dir = dump_dir
        self.progress = progress
        self.manifest_file: BinaryIO | None = None  # manifest.json's bytes, once read
        # Records whose digest the hash thread is still computing, and those
        # after them: they wait here so the log keeps the tar's order.
        self.waiting: deque[tuple[Any, ...]] = deque()
        self.source = Source(stream, READ_CHUNK, READ_AHEAD)
        self.hasher = HashThread()
        # Restore's checks, until the first member restore would refuse: the
        # members after it are not checked (restore stops there too).
        self.checks = MemberChecks()
        self.refused: tuple[int, str] | None = None  # (member index, restore's reason)
        self.backup_read = False

    def __enter__(self) -> _Scanner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.source.close()
        self.hasher.close()
        if self.manifest_file is not None:
            self.manifest_file.close()

    def run(self) -> None:
        self._members()
        self.source.drain()  # the decompressor and decryptor check the stream's own end
        self.hasher.close()  # every digest is final
        self._log_ready()

    def _members(self) -> None:
        reader = TarReader(self.source)
        log, waiting = self.log, self.waiting
        index = bytes_done = 0
        last_report = time.monotonic()
        while (member := reader.next()) is not None:
            name = member.name
            if self.refused is None:
                try:
                    self.checks.check(member)
                except ArchiveError as exc:
                    self._refuse(index, str(exc))
            if self.manifest_file is not None:
                pass  # not compared with anything; the checks refuse it
            elif name == MANIFEST_JSON:
                self.manifest_file = self._spool_manifest(member)
            else:
                digest = self._content_digest(member) if member.kind == "file" else None
                record = (name, member.kind, member.size, member.mode, member.uid, member.gid,
                          member.mtime_ns, member.linkname, digest)  # fmt: skip
                if waiting or type(digest) is PendingDigest:
                    waiting.append(record)
                    self._log_ready()
                else:
                    log.add(record)
            index += 1
            bytes_done += member.size
            if time.monotonic() - last_report >= PROGRESS_SECONDS:
                last_report = time.monotonic()
                self.progress(Progress("verifying", bytes_done))

    def _refuse(self, index: int, reason: str) -> None:
        if self.refused is None:
            self.refused = (index, reason)

    def refusal(self) -> str | None:
        """Once the pass is over: the first member restore would refuse, in
        tar order, and why (None: restore accepts every member)."""
        refused_at = self.refused[0] if self.refused is not None else None
        checks = self.checks
        pending = [h for h in checks.hardlinks if refused_at is None or h[0] < refused_at]
        if pending:
            kinds = self._first_kinds({source for _, _, source in pending})
            for index, name, source in pending:
                first = kinds.get(source)
                try:
                    kind = first[1] if first and first[0] < index else None
                    check_hardlink_source(name, source, kind)
                except ArchiveError as exc:
                    return str(exc)
        if self.refused is not None:
            return self.refused[1]
        missing = checks.empty_volumes()
        return missing[0] if missing else None

    def _first_kinds(self, names: set[str]) -> dict[str, tuple[int, str]]:
        """name -> (index, kind) of its first member, for NAMES (the log holds
        every member before manifest.json, in tar order)."""
        found: dict[str, tuple[int, str]] = {}
        for index, seen in enumerate(self.log):
            if seen.name in names and seen.name not in found:
                found[seen.name] = (index, seen.kind)
        return found

    def _log_ready(self) -> None:
        """Move the waiting records whose digest is known to the log, in order."""
        waiting = self.waiting
        while waiting:
            record = waiting[0]
            digest = record[-1]
            if type(digest) is PendingDigest:
                if digest.hexdigest is None:
                    return
                record = (*record[:-1], digest.hexdigest)
            self.log.add(record)
            waiting.popleft()

    def _content_digest(self, member: Member) -> str | PendingDigest:
        name = member.name
        if name == BACKUP_JSON:
            if member.size > MAX_BACKUP_JSON:
                raise ArchiveError(f"{name} is implausibly large ({member.size} bytes)")
            raw = self.source.read(member.size)
            if len(raw) != member.size:
                raise ArchiveError(f"archive truncated inside member {name!r}")
            if not self.backup_read:  # a second one is a duplicate: the first counts
                self.backup_read = True
                try:
                    if self.refused is None:  # backup.json is then the first member
                        self.report.backup = self.checks.accept_backup_json(raw)
                    else:
                        self.report.backup = parse_backup_json(raw)
                except ArchiveError as exc:
                    self._refuse(self.checks.index, str(exc))
            return hashlib.sha256(raw).hexdigest()
        if self.dump_dir is not None and name.startswith(_DATABASES_PREFIX):
            copy_to = self.dump_dir / f"dump-{len(self.report.dump_files)}"
            self.report.dump_files[name] = copy_to
            fd = os.open(copy_to, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                return self._hash_data(member, fd)
            finally:
                os.close(fd)
        return self._hash_data(member)

    def _hash_data(self, member: Member, copy_fd: int | None = None) -> str | PendingDigest:
        """SHA-256 of the member's data, hashed where the read-ahead reader
        holds it: here for small members, on the hash thread for large ones
        (handing a small one over would cost more than hashing it)."""
        size = member.size
        if size >= LARGE_MEMBER:
            pending = PendingDigest()
            self._feed(member, size, partial(self.hasher.update, pending), copy_fd)
            self.hasher.finish(pending)
            return pending
        if copy_fd is None:
            buf, start, end = self.source.take(size)
            digest = hashlib.sha256(memoryview(buf)[start:end])
            if end - start < size:  # the member goes on in the next read-ahead chunk
                self._feed(member, size - (end - start), digest.update)
            return digest.hexdigest()
        digest = hashlib.sha256()
        self._feed(member, size, digest.update, copy_fd)
        return digest.hexdigest()

    def _feed(
        self,
        member: Member,
        left: int,
        update: Callable[[memoryview], object],
        copy_fd: int | None = None,
    ) -> None:
        """The next LEFT bytes of MEMBER's data to UPDATE (and to COPY_FD)."""
        take = self.source.take
        while left:
            buf, start, end = take(left)
            if start == end:
                raise ArchiveError(f"archive truncated inside member {member.name!r}")
            view = memoryview(buf)[start:end]
            update(view)
            while copy_fd is not None and view:
                view = view[os.write(copy_fd, view) :]
            left -= end - start

    def _spool_manifest(self, member: Member) -> BinaryIO:
        if member.kind != "file":
            raise ArchiveError(f"{MANIFEST_JSON} is not a regular file")
        # Closed by __exit__ (or here, when spooling fails).
        spool = tempfile.TemporaryFile(prefix="verify-manifest-")  # noqa: SIM115
        try:
            self._feed(member, member.size, spool.write)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        return spool  # type: ignore[return-value]
