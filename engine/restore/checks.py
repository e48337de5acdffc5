"""Checking tar members for restore, before anything is written for them.

The members come from engine.archive.tar_reader (the parser shared with
deep verification). MemberChecks is THE check of each member, in tar order:
restore's extractor runs it before writing anything, and deep verification
(engine.archive.reader) runs the same one, as a restore of every volume
would, so an archive verify calls valid is one restore accepts, and both
refuse a hostile one with the same message. A member's name, type and link
target either say where it goes or raise ArchiveError naming it; the only
state kept is backup.json's volume list and the names of directory members
(not one record per file: deep verification's memory must not grow with the
number of members). The filesystem side is in safe_fs.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from collections.abc import Callable, Collection, Container, Iterable, Iterator, Mapping
from typing import Any, Literal, NamedTuple

from engine.archive.layout import (
    BACKUP_JSON,
    CONFIG_DIR,
    CONTAINERS_JSON,
    DATABASES_DIR,
    MANIFEST_JSON,
    VOLUMES_DIR,
)
from engine.archive.manifest import Manifest, ManifestEntry
from engine.archive.manifest_stream import ManifestFormatError, ManifestStream
from engine.archive.tar_reader import Kind, Member
from engine.errors import ArchiveError
from engine.incremental.delta import APPLY_SCRIPT, DELTAS_DIR, delta_member

NAME_MAX = 255  # bytes in one path component (Linux)
PATH_MAX = 4095  # bytes in a symlink's target (the kernel's bound)
# Bytes in a whole member name. Not PATH_MAX: extraction opens one component
# at a time (safe_fs.Tree), so deeper trees restore (a backup archives them:
# engine.archive.walk); this only bounds what one member may make us hold.
MAX_MEMBER_NAME = 64 << 10
MAX_JSON = 1 << 30  # backup.json / manifest.json of a few million files still fits

# Where a member goes. "volume": into a target volume; "spool": a database or
# config file handed to the caller; "skip": read past (a volume not asked for,
# an incremental's apply_deltas.py); "delta": the block delta of a target
# volume's file (engine.incremental.delta), applied by a chain restore.
Area = Literal["volume", "spool", "skip", "backup", "manifest", "delta"]
# The kind of the earlier member of a name, None if no earlier member has it.
EarlierKind = Callable[[str], "str | None"]


class Placement(NamedTuple):  # a tuple: made for every member, so cheap
    area: Area
    root: str  # volume name, or the spool's top dir ("databases"/"config")
    parts: tuple[str, ...]  # below the volume root (() is the root); spool: the whole name


class Seen(NamedTuple):
    """What the tar said about a member, to compare with manifest.json."""

    kind: Kind
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    linkname: str
    written: bool  # extracted or spooled (so its SHA-256 was computed)

    def pack(self) -> bytes:
        """Its form while the extraction holds one per member until the
        manifest: ~60 bytes instead of ~200 for the tuple and its ints."""
        fixed = _SEEN.pack(
            _KIND_CODES[self.kind], self.size, self.mode, self.uid, self.gid, self.mtime_ns,
            self.written,
        )  # fmt: skip
        return fixed + self.linkname.encode("utf-8", "surrogateescape") if self.linkname else fixed

    @classmethod
    def unpack(cls, raw: bytes) -> Seen:
        kind, size, mode, uid, gid, mtime_ns, written = _SEEN.unpack_from(raw)
        linkname = raw[_SEEN.size :].decode("utf-8", "surrogateescape")
        return cls(_KIND_NAMES[kind], size, mode, uid, gid, mtime_ns, linkname, bool(written))


_SEEN = struct.Struct("<BqHIIq?")  # kind, size, mode, uid, gid, mtime_ns, written
_KIND_NAMES: tuple[Kind, ...] = ("file", "dir", "symlink", "hardlink")
_KIND_CODES = {kind: code for code, kind in enumerate(_KIND_NAMES)}


def packed_kind(raw: bytes) -> Kind:
    """The kind of a packed Seen, without unpacking the rest."""
    return _KIND_NAMES[raw[0]]


def split_name(name: str, what: str = "member") -> tuple[str, ...]:
    """The components of a relative member NAME; refuses absolute paths, `..`,
    `.`, empty components, NULs and names too long to create."""
    parts = tuple(name.split("/"))
    # Fast path for the usual name: no empty, "." or ".." component is
    # possible without "//", "/." or a leading "." or "/"; and at 4 bytes a
    # character at most, short components cannot exceed NAME_MAX bytes.
    if (
        name
        and name[0] not in "./"
        and name[-1] != "/"
        and "//" not in name
        and "/." not in name
        and "\0" not in name
        and len(name) <= MAX_MEMBER_NAME // 4
        and (len(name) <= NAME_MAX // 4 or max(map(len, parts)) <= NAME_MAX // 4)
    ):
        return parts
    if not name:
        raise ArchiveError(f"{what} with an empty name")
    if "\0" in name:
        raise ArchiveError(f"{what} {name!r} contains a NUL byte")
    if name.startswith("/"):
        raise ArchiveError(f"{what} {name!r} is an absolute path")
    if len(name) > MAX_MEMBER_NAME // 4 and len(os.fsencode(name)) > MAX_MEMBER_NAME:
        raise ArchiveError(f"{what} {name[:60]!r}... is too long ({len(name)} characters)")
    for part in parts:
        if part in ("", ".", ".."):
            raise ArchiveError(f"{what} {name!r} has a {part or 'empty'!r} path component")
        if len(part) > NAME_MAX // 4 and len(os.fsencode(part)) > NAME_MAX:
            raise ArchiveError(f"{what} {name[:60]!r} has a path component over {NAME_MAX} bytes")
    return parts


def check_symlink_target(name: str, target: str) -> None:
    """Any target is fine, absolute or with `..`: symlinks are recreated as
    they were and never followed. Only what the kernel cannot store is refused."""
    if not target or "\0" in target or len(os.fsencode(target)) > PATH_MAX:
        raise ArchiveError(f"symlink {name!r} has an invalid target")


def place(
    parts: tuple[str, ...],
    targets: Container[str],
    archived_volumes: Container[str],
    spooling: bool,
    skip_other: bool,
) -> Placement:
    """Where the member named by PARTS goes, or ArchiveError."""
    name = "/".join(parts)
    top = parts[0]
    if parts == (BACKUP_JSON,):
        return Placement("backup", "", ())
    if parts == (MANIFEST_JSON,):
        return Placement("manifest", "", ())
    if parts in ((APPLY_SCRIPT,), (CONTAINERS_JSON,)):
        return Placement("skip", "", parts)
    if top == DELTAS_DIR and len(parts) >= 3:
        volume = parts[1]
        if volume not in archived_volumes:
            raise ArchiveError(f"delta {name!r} is of volume {volume!r}, unknown to backup.json")
        return Placement("delta" if volume in targets else "skip", volume, parts[2:])
    if top == VOLUMES_DIR and len(parts) >= 2:
        volume = parts[1]
        if volume in targets:
            return Placement("volume", volume, parts[2:])
        if volume not in archived_volumes:
            raise ArchiveError(
                f"member {name!r} belongs to volume {volume!r}, unknown to backup.json"
            )
        if skip_other:
            return Placement("skip", volume, parts[2:])
        raise ArchiveError(f"member {name!r} belongs to volume {volume!r}, not being restored")
    if top in (DATABASES_DIR, CONFIG_DIR) and len(parts) >= 2:
        if spooling:
            return Placement("spool", top, parts)
        if skip_other:
            return Placement("skip", top, parts)
        raise ArchiveError(f"member {name!r} has nowhere to go (no spool directory given)")
    raise ArchiveError(f"unexpected member {name!r} (not part of the archive format)")


def hardlink_source(member: Member, here: Placement, earlier_kind: EarlierKind | None) -> str:
    """The normalised member name a hardlink points to: an earlier regular
    file of the same volume, never a directory, symlink or another volume.
    EARLIER_KIND(name): the kind of the earlier member NAME, None if none;
    without it (deep verification keeps no per-member state) only what the
    names say is checked here, and the caller passes the kind it finds later
    to check_hardlink_source."""
    source = "/".join(split_name(member.linkname, f"hardlink {member.name!r} target"))
    parts = source.split("/")
    if (
        here.area not in ("volume", "skip")
        or len(parts) < 2
        or parts[0] != VOLUMES_DIR
        or parts[1] != here.root
    ):
        raise ArchiveError(f"hardlink {member.name!r} points outside its volume ({source!r})")
    if earlier_kind is not None:
        check_hardlink_source(member.name, source, earlier_kind(source))
    return source


def check_hardlink_source(name: str, source: str, kind: str | None) -> None:
    """Hardlink NAME to SOURCE, whose earlier member is of KIND (None: no
    earlier member has that name)."""
    if kind is None:
        raise ArchiveError(f"hardlink {name!r} points to {source!r}, not an earlier member")
    if kind != "file":
        raise ArchiveError(f"hardlink {name!r} points to {source!r}, a {kind}")


def parse_backup_json(raw: bytes) -> dict[str, Any]:
    """backup.json's content, checked to have the shape every reader relies
    on (an object; volumes, containers and databases lists of objects with
    their fields), so a hostile or damaged one is an ArchiveError here, not
    an AttributeError or KeyError wherever it is read."""
    try:
        backup = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ArchiveError(f"{BACKUP_JSON} is unreadable: {exc}") from None
    if not isinstance(backup, dict):
        raise ArchiveError(f"{BACKUP_JSON} is invalid: a JSON {_json_type(backup)}, not an object")
    for key, fields in _BACKUP_LISTS.items():
        listed = backup.get(key, [])
        if not isinstance(listed, list):
            raise ArchiveError(f"{BACKUP_JSON} is invalid: {key} is not a list")
        for number, item in enumerate(listed):
            if key == "volumes" and isinstance(item, str):
                # Volume names alone (hand-made archives): the readers
                # (restore's plan) take objects, so they get one.
                listed[number] = item = {"name": item}
            if not isinstance(item, dict):
                raise ArchiveError(f"{BACKUP_JSON} is invalid: {key}[{number}] is not an object")
            for field, types in fields.items():
                value = item.get(field, _MISSING)
                if type(value) not in types:
                    raise ArchiveError(
                        f"{BACKUP_JSON} is invalid: {key}[{number}].{field} is missing or a "
                        f"JSON {_json_type(value)}"
                    )
    return backup


_MISSING = object()
# What the readers take from each list's items (restore's plan, the dump
# checks, the extractor): field -> the JSON types it may have.
_BACKUP_LISTS: dict[str, dict[str, tuple[type, ...]]] = {
    "volumes": {"name": (str,)},
    "containers": {"name": (str,), "service": (str, type(None))},
    "databases": {
        "container": (str,), "engine": (str,), "server_version": (str,),
        "database": (str, type(None)), "format": (str,), "size": (int,), "sha256": (str,),
        "archive_name": (str,),
    },
}  # fmt: skip


def _json_type(value: object) -> str:
    if value is _MISSING:
        return "nothing"
    names = {dict: "object", list: "list", str: "string", int: "number", float: "number",
             bool: "boolean", type(None): "null"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


class Checked(NamedTuple):
    parts: tuple[str, ...]
    name: str  # normalised: "/".join(parts)
    spot: Placement
    linkname: str  # a hardlink's normalised source member; else the tar's linkname


class MemberChecks:
    """Every member of one archive, in tar order: check() it before anything
    is done with it (ArchiveError names the first problem).

    TARGETS: the volumes being restored; None = every volume backup.json
    lists (deep verification: a restore of them all). SPOOLING: databases/
    and config/ members have a place to go. SKIP_OTHER: members with no
    place (volumes not restored) are read past instead of refused.
    EARLIER_KIND: see hardlink_source; None defers that one check to the
    caller (self.hardlinks lists what is left to check)."""

    def __init__(
        self,
        targets: Collection[str] | None = None,
        *,
        spooling: bool = True,
        skip_other: bool = False,
        earlier_kind: EarlierKind | None = None,
    ) -> None:
        self._targets = targets
        self._spooling = spooling
        self._skip_other = skip_other
        self._earlier_kind = earlier_kind
        self.backup: dict[str, Any] | None = None
        self.archived_volumes: set[str] = set()
        self.manifest_seen = False
        self._dirs: set[str] = set()  # names of the volumes' directory members so far
        self._volumes_seen: set[str] = set()
        self.index = -1  # of the member last checked, in tar order
        self.hardlinks: list[tuple[int, str, str]] = []  # deferred: (index, name, source)

    def check(self, member: Member) -> Checked:
        self.index += 1
        parts = split_name(member.name)
        name, kind = member.name, member.kind  # split_name refuses any non-normal name
        if self.manifest_seen:
            raise ArchiveError(f"member {name!r} comes after manifest.json")
        if self.backup is None and parts != (BACKUP_JSON,):
            raise ArchiveError(f"backup.json must be the first member, not {name!r}")
        targets = self.archived_volumes if self._targets is None else self._targets
        spot = place(parts, targets, self.archived_volumes, self._spooling, self._skip_other)
        area = spot.area
        if area == "volume":
            self._volume_member(member, spot, name)
        elif area == "delta":
            # A delta patches a file in a directory an earlier member made
            # (a volume not restored is read past unchecked, as its members are).
            if kind != "file":
                raise ArchiveError(f"delta {name!r} must be a regular file, not a {kind}")
            parent = "/".join((VOLUMES_DIR, *parts[1:-1]))
            if parent not in self._dirs:
                raise ArchiveError(f"delta {name!r}: its parent is not an earlier directory member")
        elif area == "spool" and kind != "file":
            raise ArchiveError(f"member {name!r} must be a regular file, not a {kind}")
        elif area in ("backup", "manifest"):
            if kind != "file" or member.size > MAX_JSON:
                raise ArchiveError(f"{name} is not a plausible JSON file")
            if area == "backup" and self.backup is not None:
                raise ArchiveError(f"duplicate member {name!r}")
            self.manifest_seen = area == "manifest"
        linkname = member.linkname
        if kind == "hardlink":
            linkname = hardlink_source(member, spot, self._earlier_kind)
            if self._earlier_kind is None:
                self.hardlinks.append((self.index, name, linkname))
        return Checked(parts, name, spot, linkname)

    def _volume_member(self, member: Member, spot: Placement, name: str) -> None:
        kind = member.kind
        self._volumes_seen.add(spot.root)
        if not spot.parts:  # the volume root
            if kind != "dir":
                raise ArchiveError(f"volume root {name!r} is not a directory")
        elif name.rpartition("/")[0] not in self._dirs:
            # Also what keeps anything from being written through a symlink:
            # a symlink member is never a directory member.
            raise ArchiveError(f"member {name!r}: its parent is not an earlier directory member")
        if kind == "dir":
            self._dirs.add(name)
        elif kind == "symlink":
            check_symlink_target(name, member.linkname)

    def accept_backup_json(self, raw: bytes) -> dict[str, Any]:
        """backup.json's bytes (the member check() placed as "backup")."""
        backup = parse_backup_json(raw)
        self.archived_volumes = {volume["name"] for volume in backup.get("volumes", [])}
        self.backup = backup
        return backup

    def empty_volumes(self) -> list[str]:
        """Once every member is checked: one error per volume to restore
        that no member belonged to."""
        targets = self.archived_volumes if self._targets is None else self._targets
        missing = sorted(set(targets) - self._volumes_seen)
        return [f"volume {volume!r} has no member in the archive" for volume in missing]


_ENTRY_FIELDS = frozenset(field.name for field in dataclasses.fields(ManifestEntry))
_ENTRY_REQUIRED = frozenset(
    field.name for field in dataclasses.fields(ManifestEntry)
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
)  # fmt: skip


def manifest_entries(stream: ManifestStream) -> Iterator[dict[str, Any]]:
    """manifest.json's entries, one at a time (ManifestStream: never the whole
    document in memory; the JSON of 56,000 entries held at once made the
    restore's peak RSS grow by ~60 MB at its very end), each refused where
    ManifestEntry(**entry) would refuse it, but left the JSON object it is."""
    fields, required = _ENTRY_FIELDS, _ENTRY_REQUIRED
    for entry in stream.entries():
        keys = entry.keys()
        if not required <= keys <= fields:
            raise ManifestFormatError(
                f"{MANIFEST_JSON} is unreadable: entry {entry.get('path')!r}: missing "
                f"{sorted(required - keys)}, unknown {sorted(keys - fields)}"
            )
        yield entry


def manifest_head(fields: Mapping[str, Any]) -> Manifest:
    """The Manifest of manifest.json's other keys (STREAM.fields once its
    entries are read), without entries; refused as Manifest.from_bytes would."""
    try:
        return Manifest(
            backup_id=fields["backup_id"], kind=fields["kind"],
            parent_backup_id=fields.get("parent_backup_id"), entries=[],
            deleted=list(fields.get("deleted", [])), skipped=list(fields.get("skipped", [])),
            format_version=fields["format_version"],
        )  # fmt: skip
    except (KeyError, TypeError) as exc:
        raise ManifestFormatError(f"{MANIFEST_JSON} is unreadable: {exc!r}") from None


@dataclasses.dataclass
class Comparison:
    """compare_manifest's findings."""

    errors: list[str]
    mtimes: dict[str, int]  # member -> the manifest's mtime_ns where the tar's differs
    kept: dict[str, dict[str, Any]]  # the entries of those members and of the ones asked for
    listed: set[str]  # every path the manifest lists
    deltas: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # "delta" entries


def compare_manifest(
    entries: Iterable[dict[str, Any]],
    seen: Mapping[str, bytes],
    digests: Mapping[str, bytes],
    keep: Container[str] = (),
) -> Comparison:
    """Every entry (manifest_entries: read once, one at a time) against what
    the tar said (SEEN: Seen.pack()ed) and the SHA-256 computed (DIGESTS, raw). Only the
    entries the caller still needs are kept: those of KEEP, and those whose
    mtime differs from the tar's (not an error: the manifest has exact
    nanoseconds, so the caller simply applies its value)."""
    errors: list[str] = []
    mtimes: dict[str, int] = {}
    kept: dict[str, dict[str, Any]] = {}
    listed = set()
    deltas: dict[str, dict[str, Any]] = {}
    for entry in entries:
        path, kind = entry["path"], entry["type"]
        listed.add(path)
        if kind == "delta":  # no member of its own: its bytes are the delta member's
            if delta_member(path) not in seen or not path.startswith(f"{VOLUMES_DIR}/"):
                errors.append(f"{path!r}: its delta member is not in the archive")
            deltas[path] = entry
            continue
        packed = seen.get(path)
        if packed is None:
            errors.append(f"{path!r} is in the manifest but not in the archive")
            continue
        got = Seen.unpack(packed)
        problem = None
        if kind != got.kind:
            problem = f"type {got.kind} != manifest {kind}"
        elif kind == "file" and entry["size"] != got.size:
            problem = f"size {got.size} != manifest {entry['size']}"
        elif kind == "file" and got.written and entry.get("sha256") != _hex(digests.get(path)):
            problem = "content does not match the manifest's SHA-256"
        elif (entry["mode"], entry["uid"], entry["gid"]) != (got.mode, got.uid, got.gid):
            problem = "mode or owner differs from the manifest"
        elif kind in ("symlink", "hardlink") and entry.get("link_target") != got.linkname:
            problem = "link target differs from the manifest"
        if problem:
            errors.append(f"{path!r}: {problem}")
            continue
        if entry["mtime_ns"] != got.mtime_ns:
            mtimes[path] = entry["mtime_ns"]
            kept[path] = entry
        elif path in keep:
            kept[path] = entry
    errors.extend(f"member {name!r} is not in the manifest" for name in seen.keys() - listed)
    return Comparison(errors, mtimes, kept, listed, deltas)


def _hex(digest: bytes | None) -> str | None:
    return None if digest is None else digest.hex()
