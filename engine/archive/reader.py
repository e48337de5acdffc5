"""Reads an archive tar stream and checks every member against manifest.json.

Used by deep verification (no restore) and, member by member, by restore.
Works in stream mode: the archive is read once, front to back, so it can come
straight out of a decryptor and decompressor.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from engine.archive.layout import (
    BACKUP_JSON,
    CONFIG_DIR,
    DATABASES_DIR,
    MANIFEST_JSON,
    split_volume_member,
)
from engine.archive.manifest import Manifest, ManifestEntry
from engine.errors import ArchiveError
from engine.progress import Progress, ProgressCallback, no_progress

READ_CHUNK = 1024 * 1024
_TYPES = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
}


@dataclass
class VolumeSummary:
    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0


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


@dataclass
class _Seen:
    type: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime: float
    linkname: str
    sha256: str | None


def open_tar_stream(stream: BinaryIO) -> tarfile.TarFile:
    # A 1 MiB stream buffer instead of tarfile's 10 KiB: far fewer reads.
    return tarfile.open(
        fileobj=stream, mode="r|", bufsize=READ_CHUNK, encoding="utf-8", errors="surrogateescape"
    )


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Members one by one, forgetting each: a stream-mode TarFile otherwise
    keeps every TarInfo, and memory would grow with the file count."""
    while (member := tar.next()) is not None:
        tar.members.clear()
        yield member


def _hash_member(tar: tarfile.TarFile, member: tarfile.TarInfo, copy_to: Path | None = None) -> str:
    """SHA-256 of a member's content, optionally copied to COPY_TO (0600)."""
    extracted = tar.extractfile(member)
    if extracted is None:
        raise ArchiveError(f"cannot read member {member.name!r}")
    digest = hashlib.sha256()
    copy = None
    if copy_to is not None:
        copy = os.fdopen(os.open(copy_to, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
    try:
        while chunk := extracted.read(READ_CHUNK):
            digest.update(chunk)
            if copy is not None:
                copy.write(chunk)
    finally:
        if copy is not None:
            copy.close()
    return digest.hexdigest()


def scan_archive(
    stream: BinaryIO, progress: ProgressCallback = no_progress, dump_dir: Path | None = None
) -> ArchiveReport:
    """Read the whole archive, hash every file, compare with the manifest.
    With DUMP_DIR, database dumps are also copied there (report.dump_files),
    so their content can be checked after the scan."""
    report = ArchiveReport(valid=False)
    seen: dict[str, _Seen] = {}
    manifest: Manifest | None = None
    done = 0
    try:
        with open_tar_stream(stream) as tar:
            for index, member in enumerate(_members(tar)):
                if manifest is not None:
                    report.errors.append(f"member {member.name!r} after manifest.json")
                    continue
                if member.name == MANIFEST_JSON:
                    manifest = Manifest.from_bytes(_read_small(tar, member))
                    continue
                if member.name in seen:
                    report.errors.append(f"duplicate member {member.name!r}")
                kind = _TYPES.get(member.type, "other")
                digest = None
                if member.name == BACKUP_JSON:
                    if index != 0:
                        report.errors.append("backup.json is not the first member")
                    raw = _read_small(tar, member)
                    report.backup = json.loads(raw)
                    digest = hashlib.sha256(raw).hexdigest()
                elif kind == "file":
                    copy_to = None
                    if dump_dir is not None and member.name.startswith(f"{DATABASES_DIR}/"):
                        copy_to = dump_dir / f"dump-{len(report.dump_files)}"
                        report.dump_files[member.name] = copy_to
                    digest = _hash_member(tar, member, copy_to)
                seen[member.name] = _Seen(
                    kind, member.size, member.mode, member.uid, member.gid, member.mtime,
                    member.linkname, digest,
                )  # fmt: skip
                done += member.size
                progress(Progress("verifying", done))
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        report.errors.append(f"archive is unreadable or truncated: {exc}")
        return report
    if manifest is None:
        report.errors.append("manifest.json is missing (archive truncated?)")
        return report
    _compare(manifest, seen, report)
    _summarise(manifest, report)
    report.valid = not report.errors
    return report


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int = 1 << 30) -> bytes:
    if member.size > limit:
        raise ArchiveError(f"{member.name} is implausibly large ({member.size} bytes)")
    extracted = tar.extractfile(member)
    if extracted is None:
        raise ArchiveError(f"{member.name} is not a regular file")
    return extracted.read()


def _compare(manifest: Manifest, seen: dict[str, _Seen], report: ArchiveReport) -> None:
    listed = {entry.path: entry for entry in manifest.entries}
    for name in seen.keys() - listed.keys():
        report.errors.append(f"member {name!r} is not in the manifest")
    for path, entry in listed.items():
        got = seen.get(path)
        if got is None:
            report.errors.append(f"{path!r} is in the manifest but not in the archive")
            continue
        problem = _mismatch(entry, got)
        if problem:
            report.errors.append(f"{path!r}: {problem}")


def _mismatch(entry: ManifestEntry, got: _Seen) -> str | None:
    if entry.type != got.type:
        return f"type {got.type} != manifest {entry.type}"
    if entry.type == "file":
        if entry.size != got.size:
            return f"size {got.size} != manifest {entry.size}"
        if entry.sha256 != got.sha256:
            return "SHA-256 does not match the manifest"
    if (entry.mode, entry.uid, entry.gid) != (got.mode, got.uid, got.gid):
        return "mode or owner differs from the manifest"
    if abs(entry.mtime_ns / 1e9 - got.mtime) > 1e-3:
        return "mtime differs from the manifest"
    if entry.type in ("symlink", "hardlink") and entry.link_target != got.linkname:
        return "link target differs from the manifest"
    return None


def _summarise(manifest: Manifest, report: ArchiveReport) -> None:
    databases: set[str] = set()
    for entry in manifest.entries:
        volume = split_volume_member(entry.path)
        if volume is not None:
            summary = report.volumes.setdefault(volume[0], VolumeSummary())
            if entry.type == "file":
                summary.files += 1
                summary.bytes += entry.size
                report.file_count += 1
                report.total_bytes += entry.size
            elif entry.type == "dir":
                summary.dirs += 1
            else:
                summary.links += 1
        elif entry.path.startswith(f"{DATABASES_DIR}/"):
            databases.add(entry.path.removeprefix(f"{DATABASES_DIR}/"))
            report.total_bytes += entry.size
        elif entry.path.startswith(f"{CONFIG_DIR}/"):
            report.config_files.append(entry.path.removeprefix(f"{CONFIG_DIR}/"))
    report.databases = sorted(databases)
