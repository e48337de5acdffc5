"""manifest.json: the list of every member with its metadata and SHA-256.

Built for deep verification (compare each member with its entry) and for
incremental backups: each volume entry keeps the source file's identity
(device, inode, ctime, size, mtime), so the next backup can tell which files
changed without reading them, and `deleted` lists paths gone since the parent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.archive.layout import FORMAT_VERSION

# "delta": a volume file stored as a block delta (engine.incremental.delta):
# its size and sha256 are the new file's; its bytes are in member deltas/...
EntryType = Literal["file", "dir", "symlink", "hardlink", "delta"]
# One entry per line: still one JSON document, and greppable by hand.
ENTRY_SEPARATOR = b",\n"
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


@dataclass
class ManifestEntry:
    path: str  # member name in the tar, e.g. "volumes/wp_data/index.php"
    type: EntryType
    size: int  # bytes of content stored (0 for non-files)
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int
    mtime_ns: int
    link_target: str | None = None  # symlink target, or hardlink's first member
    sha256: str | None = None  # content hash of files
    sparse: bool = False  # the source had holes; restore recreates them
    # Live backup: the file changed while being read (its size, mtime or ctime
    # after the read differ from before it, or another file was renamed over it
    # between listing and opening): the stored copy may be inconsistent.
    changed_during_read: bool = False
    # Identity of the source file, for incremental change detection.
    dev: int | None = None
    ino: int | None = None
    ctime_ns: int | None = None

    def to_json(self) -> dict[str, Any]:
        # Omit empty optional fields: manifests of big volumes stay small.
        # Built field by field: this runs once per file, and a generic
        # comprehension over vars() costs several times as much.
        data: dict[str, Any] = {
            "path": self.path, "type": self.type, "size": self.size, "mode": self.mode,
            "uid": self.uid, "gid": self.gid, "mtime_ns": self.mtime_ns,
        }  # fmt: skip
        if self.link_target is not None:
            data["link_target"] = self.link_target
        if self.sha256 is not None:
            data["sha256"] = self.sha256
        if self.sparse:
            data["sparse"] = True
        if self.changed_during_read:
            data["changed_during_read"] = True
        if self.dev is not None:
            data["dev"] = self.dev
        if self.ino is not None:
            data["ino"] = self.ino
        if self.ctime_ns is not None:
            data["ctime_ns"] = self.ctime_ns
        return data

    def encode(self) -> bytes:
        """This entry as it appears in manifest.json."""
        # ensure_ascii keeps undecodable file names (surrogate escapes) representable.
        return _ENCODER.encode(self.to_json()).encode("ascii")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ManifestEntry:
        return cls(**data)


@dataclass
class Manifest:
    backup_id: str
    kind: Literal["full", "incremental"] = "full"
    parent_backup_id: str | None = None
    entries: list[ManifestEntry] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # member paths gone since the parent
    skipped: list[dict[str, str]] = field(default_factory=list)  # sockets, devices, ...
    format_version: int = FORMAT_VERSION

    def head(self) -> bytes:
        """manifest.json up to the first entry. Entries follow, separated by
        ENTRY_SEPARATOR, then tail(): so a writer can stream a manifest of
        millions of entries from disk instead of holding it in memory."""
        head = {
            "format_version": self.format_version,
            "backup_id": self.backup_id,
            "kind": self.kind,
            "parent_backup_id": self.parent_backup_id,
        }
        return _ENCODER.encode(head)[:-1].encode("ascii") + b',"entries":[\n'

    def tail(self) -> bytes:
        rest = _ENCODER.encode({"deleted": self.deleted, "skipped": self.skipped})
        return b"\n]," + rest[1:].encode("ascii")

    def to_bytes(self) -> bytes:
        entries = ENTRY_SEPARATOR.join(entry.encode() for entry in self.entries)
        return self.head() + entries + self.tail()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        body = json.loads(raw)
        if body.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported manifest format version {body.get('format_version')!r}")
        return cls(
            backup_id=body["backup_id"],
            kind=body["kind"],
            parent_backup_id=body.get("parent_backup_id"),
            entries=[ManifestEntry.from_json(e) for e in body["entries"]],
            deleted=list(body.get("deleted", [])),
            skipped=list(body.get("skipped", [])),
            format_version=body["format_version"],
        )
