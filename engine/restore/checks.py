"""Checking tar members for restore, before anything is written for them.

The members come from engine.archive.tar_reader (the parser shared with
deep verification). The checks here are pure: a member's name, type and link
target either say where it goes or raise ArchiveError naming it. The
filesystem side is in safe_fs.py.
"""

from __future__ import annotations

import os
from collections.abc import Container, Mapping
from typing import Literal, NamedTuple

from engine.archive.layout import BACKUP_JSON, CONFIG_DIR, DATABASES_DIR, MANIFEST_JSON, VOLUMES_DIR
from engine.archive.manifest import Manifest
from engine.archive.tar_reader import Kind, Member
from engine.errors import ArchiveError

NAME_MAX = 255  # bytes in one path component (Linux)
PATH_MAX = 4095  # bytes in a whole path, without the final NUL

# Where a member goes. "volume": into a target volume; "spool": a database or
# config file handed to the caller; "skip": read past (a volume not asked for).
Area = Literal["volume", "spool", "skip", "backup", "manifest"]


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
        and len(name) <= PATH_MAX // 4
        and (len(name) <= NAME_MAX // 4 or max(map(len, parts)) <= NAME_MAX // 4)
    ):
        return parts
    if not name:
        raise ArchiveError(f"{what} with an empty name")
    if "\0" in name:
        raise ArchiveError(f"{what} {name!r} contains a NUL byte")
    if name.startswith("/"):
        raise ArchiveError(f"{what} {name!r} is an absolute path")
    if len(name) > PATH_MAX // 4 and len(os.fsencode(name)) > PATH_MAX:
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


def hardlink_source(member: Member, here: Placement, seen: Mapping[str, Seen]) -> str:
    """The normalised member name a hardlink points to: an earlier regular
    file of the same volume, never a directory, symlink or another volume."""
    source = "/".join(split_name(member.linkname, f"hardlink {member.name!r} target"))
    earlier = seen.get(source)
    if earlier is None:
        raise ArchiveError(f"hardlink {member.name!r} points to {source!r}, not an earlier member")
    if earlier.kind != "file":
        raise ArchiveError(f"hardlink {member.name!r} points to {source!r}, a {earlier.kind}")
    parts = source.split("/")
    if here.area not in ("volume", "skip") or parts[0] != VOLUMES_DIR or parts[1] != here.root:
        raise ArchiveError(f"hardlink {member.name!r} points outside its volume ({source!r})")
    return source


def compare_manifest(
    manifest: Manifest, seen: Mapping[str, Seen], digests: Mapping[str, str]
) -> tuple[list[str], dict[str, int]]:
    """(errors, member -> manifest mtime_ns where it differs from the tar's).

    Mtimes are not errors: the manifest has exact nanoseconds, so where the
    tar header disagrees the caller simply applies the manifest's value."""
    errors: list[str] = []
    mtimes: dict[str, int] = {}
    listed = set()
    for entry in manifest.entries:
        listed.add(entry.path)
        got = seen.get(entry.path)
        if got is None:
            errors.append(f"{entry.path!r} is in the manifest but not in the archive")
            continue
        problem = None
        if entry.type != got.kind:
            problem = f"type {got.kind} != manifest {entry.type}"
        elif entry.type == "file" and entry.size != got.size:
            problem = f"size {got.size} != manifest {entry.size}"
        elif entry.type == "file" and got.written and entry.sha256 != digests.get(entry.path):
            problem = "content does not match the manifest's SHA-256"
        elif (entry.mode, entry.uid, entry.gid) != (got.mode, got.uid, got.gid):
            problem = "mode or owner differs from the manifest"
        elif entry.type in ("symlink", "hardlink") and entry.link_target != got.linkname:
            problem = "link target differs from the manifest"
        if problem:
            errors.append(f"{entry.path!r}: {problem}")
        elif entry.mtime_ns != got.mtime_ns:
            mtimes[entry.path] = entry.mtime_ns
    errors.extend(f"member {name!r} is not in the manifest" for name in seen.keys() - listed)
    return errors, mtimes
