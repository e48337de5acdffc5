"""manifest.json against the members deep verification saw, in one
streaming pass, and the contents summary taken from the manifest on the way.

The writer lists manifest entries in exactly the tar's member order, so
entry i is compared with member i, holding neither list in memory. An
archive whose orders differ (foreign or tampered) is compared by name
instead, with the same messages: that holds the members in memory, a cost
only a broken archive pays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import Any, BinaryIO

from engine.archive.layout import CONFIG_DIR, DATABASES_DIR, VOLUMES_DIR
from engine.archive.manifest import ManifestEntry
from engine.archive.manifest_stream import ManifestFormatError, ManifestStream
from engine.archive.member_log import MemberLog, SeenMember
from engine.incremental.delta import delta_member

MTIME_TOLERANCE_NS = 1_000_000  # the tar header may round what the manifest has exactly
_VOLUMES_PREFIX = f"{VOLUMES_DIR}/"
_DATABASES_PREFIX = f"{DATABASES_DIR}/"
_CONFIG_PREFIX = f"{CONFIG_DIR}/"
# What restore's reader (Manifest.from_bytes, ManifestEntry.from_json) takes:
# a manifest it would refuse is not valid here either.
_ENTRY_FIELDS = frozenset(f.name for f in fields(ManifestEntry))
_ENTRY_REQUIRED = frozenset(
    f.name for f in fields(ManifestEntry) if f.default is MISSING and f.default_factory is MISSING
)
_MANIFEST_REQUIRED = ("backup_id", "kind")


@dataclass
class VolumeSummary:
    files: int = 0
    dirs: int = 0
    links: int = 0
    bytes: int = 0


def compare_with_manifest(
    manifest_file: BinaryIO, log: MemberLog
) -> tuple[list[str], ContentsSummary]:
    """(errors, summary): every member against its manifest entry. Raises
    ManifestFormatError when manifest.json is unreadable, however far the
    comparison got: half a comparison would be misleading."""
    stream = ManifestStream(manifest_file)
    result = _compare_in_order(stream, log)
    if result is None:  # the orders differ: compare by name (holds the members)
        manifest_file.seek(0)
        stream = ManifestStream(manifest_file)
        result = _compare_by_name(stream, log)
    missing = [key for key in _MANIFEST_REQUIRED if not isinstance(stream.fields.get(key), str)]
    if missing:
        raise ManifestFormatError(f"manifest.json has no {missing[0]!r} (restore refuses it)")
    return result


def _check_fields(entry: dict[str, Any], path: str) -> None:
    keys = entry.keys()
    if not keys <= _ENTRY_FIELDS:
        unknown = sorted(keys - _ENTRY_FIELDS)[0]
        raise ManifestFormatError(
            f"manifest.json entry {path!r} is malformed (unknown field {unknown!r})"
        )
    if not keys >= _ENTRY_REQUIRED:
        absent = sorted(_ENTRY_REQUIRED - keys)[0]
        raise ManifestFormatError(f"manifest.json entry {path!r} is malformed (no {absent!r})")


def _compare_in_order(
    manifest: ManifestStream, log: MemberLog
) -> tuple[list[str], ContentsSummary] | None:
    """Entry i against member i, in constant memory; None as soon as the two
    orders disagree (then nothing of this pass is kept)."""
    errors: list[str] = []
    summary = ContentsSummary()
    next_member = iter(log).__next__
    previous: str | None = None
    for entry in manifest.entries():
        if entry.get("type") == "delta":  # right after its delta member, which it has no other
            path = _path(entry, manifest)
            _check_fields(entry, path)
            if previous != delta_member(path):
                return None
            summary.add(entry, path)
            continue
        try:
            got = next_member()
        except StopIteration:
            return None
        path = previous = got.name
        if entry.get("path") != path:
            _path(entry, manifest)  # a malformed entry is an error, not a difference in order
            return None
        _check_fields(entry, path)
        problem = _mismatch(entry, got)
        if problem:
            errors.append(f"{path!r}: {problem}")
        summary.add(entry, path)
    if _has_more(next_member):  # members the manifest does not list
        return None
    return errors, summary


def _has_more(next_member: Callable[[], SeenMember]) -> bool:
    try:
        next_member()
    except StopIteration:
        return False
    return True


def _compare_by_name(manifest: ManifestStream, log: MemberLog) -> tuple[list[str], ContentsSummary]:
    seen = {member.name: member for member in log}
    listed: dict[str, dict[str, Any]] = {}
    summary = ContentsSummary()
    for entry in manifest.entries():
        path = _path(entry, manifest)
        _check_fields(entry, path)
        listed[path] = entry
        summary.add(entry, path)
    errors = [f"member {name!r} is not in the manifest" for name in seen.keys() - listed.keys()]
    for path, entry in listed.items():
        if entry.get("type") == "delta":
            if not path.startswith(_VOLUMES_PREFIX) or delta_member(path) not in seen:
                errors.append(f"{path!r}: its delta member is not in the archive")
            continue
        got = seen.get(path)
        if got is None:
            errors.append(f"{path!r} is in the manifest but not in the archive")
            continue
        problem = _mismatch(entry, got)
        if problem:
            errors.append(f"{path!r}: {problem}")
    return errors, summary


def _path(entry: dict[str, Any], manifest: ManifestStream) -> str:
    path = entry.get("path")
    if not isinstance(path, str):
        raise ManifestFormatError(f"manifest.json entry #{manifest.entry_count - 1} has no path")
    return path


def _mismatch(entry: dict[str, Any], got: SeenMember) -> str | None:
    try:
        kind = entry["type"]
        if kind != got.kind:
            return f"type {got.kind} != manifest {kind}"
        if kind == "file":
            if entry["size"] != got.size:
                return f"size {got.size} != manifest {entry['size']}"
            if entry.get("sha256") != got.sha256:
                return "SHA-256 does not match the manifest"
        if (entry["mode"], entry["uid"], entry["gid"]) != (got.mode, got.uid, got.gid):
            return "mode or owner differs from the manifest"
        if abs(entry["mtime_ns"] - got.mtime_ns) > MTIME_TOLERANCE_NS:
            return "mtime differs from the manifest"
    except (KeyError, TypeError) as exc:
        raise ManifestFormatError(
            f"manifest.json entry {got.name!r} is malformed ({type(exc).__name__}: {exc})"
        ) from None
    if kind in ("symlink", "hardlink") and entry.get("link_target") != got.linkname:
        return "link target differs from the manifest"
    return None


class ContentsSummary:
    """What the archive holds, from its manifest entries, one at a time."""

    def __init__(self) -> None:
        self.volumes: dict[str, VolumeSummary] = {}
        self.databases: set[str] = set()
        self.config_files: list[str] = []
        self.file_count = 0
        self.total_bytes = 0

    def add(self, entry: dict[str, Any], path: str) -> None:
        kind, size = entry.get("type"), entry.get("size", 0)
        if type(size) is not int:
            raise ManifestFormatError(f"manifest.json entry {path!r} has an invalid size")
        if path.startswith(_VOLUMES_PREFIX):  # as split_volume_member, inline: once per entry
            volume = path[len(_VOLUMES_PREFIX) :].partition("/")[0]
            if volume:
                summary = self.volumes.get(volume)
                if summary is None:
                    summary = self.volumes[volume] = VolumeSummary()
                if kind in ("file", "delta"):
                    summary.files += 1
                    summary.bytes += size
                    self.file_count += 1
                    self.total_bytes += size
                elif kind == "dir":
                    summary.dirs += 1
                else:
                    summary.links += 1
                return
        if path.startswith(_DATABASES_PREFIX):
            self.databases.add(path[len(_DATABASES_PREFIX) :])
            self.total_bytes += size
        elif path.startswith(_CONFIG_PREFIX):
            self.config_files.append(path[len(_CONFIG_PREFIX) :])

    def sorted_databases(self) -> list[str]:
        return sorted(self.databases)
