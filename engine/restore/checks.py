"""Reading and checking tar members, before anything is written for them.

TarReader parses the headers ArchiveWriter writes (POSIX ustar plus PAX
extended headers, as tarfile's PAX_FORMAT) and nothing else: GNU long names,
global or sparse headers, devices and FIFOs are refused. It is a lean parser
because tarfile's takes 100-150 µs a member, more than creating the file. Its
output is checked against tarfile's in the tests.

The rest is pure: a member's name, type and link target either say where it
goes or raise ArchiveError naming it. The filesystem side is in safe_fs.py.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol
from zlib import adler32

from engine.archive.layout import BACKUP_JSON, CONFIG_DIR, DATABASES_DIR, MANIFEST_JSON, VOLUMES_DIR
from engine.archive.manifest import Manifest
from engine.errors import ArchiveError

BLOCK = 512
NAME_MAX = 255  # bytes in one path component (Linux)
PATH_MAX = 4095  # bytes in a whole path, without the final NUL
MAX_ID = 2**32 - 2  # (uid_t)-1 means "unchanged" to chown: never a real owner
MAX_PAX = 1 << 20  # an extended header holds a few names, not megabytes

Kind = Literal["file", "dir", "symlink", "hardlink"]
_KINDS: dict[bytes, Kind] = {
    b"0": "file",
    b"\0": "file",
    b"5": "dir",
    b"2": "symlink",
    b"1": "hardlink",
}
_REFUSED = {b"3": "a character device", b"4": "a block device", b"6": "a FIFO",
            b"7": "a contiguous file", b"S": "a GNU sparse file", b"g": "a global PAX header",
            b"L": "a GNU long name", b"K": "a GNU long link name"}  # fmt: skip
_SIGNED = struct.Struct("148b8x356b")
_ZERO_BLOCK = bytes(BLOCK)

# Where a member goes. "volume": into a target volume; "spool": a database or
# config file handed to the caller; "skip": read past (a volume not asked for).
Area = Literal["volume", "spool", "skip", "backup", "manifest"]


class Readable(Protocol):
    def read(self, n: int) -> bytes: ...

    def tell(self) -> int: ...

    def seek(self, pos: int) -> int: ...


@dataclass(slots=True)
class Member:
    name: str
    kind: Kind
    size: int
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int
    mtime_ns: int
    linkname: str


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


class TarReader:
    """Members of a tar stream, one after the other; the caller reads a
    file's data (or not) between calls to next()."""

    def __init__(self, source: Readable) -> None:
        self._source = source
        self._next_header = source.tell()

    def next(self) -> Member | None:
        """The next member, or None at the end of the archive. A stream that
        ends between members also ends here: manifest.json will be missing."""
        self._source.seek(self._next_header)
        header = self._block()
        if header is None:
            return None
        pax: dict[bytes, bytes] = {}
        if header[156] == 0x78:  # "x": an extended header for the next member
            pax = self._pax(header)
            header = self._block()
            if header is None:
                raise ArchiveError("archive truncated after a PAX header")
        member = _member(header, pax)
        data = (member.size + BLOCK - 1) // BLOCK * BLOCK if member.kind == "file" else 0
        self._next_header = self._source.tell() + data
        return member

    def _block(self) -> bytes | None:
        header = self._source.read(BLOCK)
        if len(header) < BLOCK:
            if header:
                raise ArchiveError("archive truncated inside a header")
            return None
        if header == _ZERO_BLOCK:
            return None
        stored = _number(header[148:156])
        if stored != _byte_sum(header) - sum(header[148:156]) + 8 * 32 and (
            stored != sum(_SIGNED.unpack(header)) + 8 * 32  # some old tars sum signed bytes
        ):
            raise ArchiveError("invalid tar header checksum (corrupt archive?)")
        if header[257:265] != b"ustar\x0000":
            raise ArchiveError("not a POSIX (ustar/pax) tar header")
        return header

    def _pax(self, header: bytes) -> dict[bytes, bytes]:
        """The records "<length> <key>=<value>\\n" of an extended header."""
        size = _number(header[124:136])
        if not 0 <= size <= MAX_PAX:
            raise ArchiveError(f"implausible PAX header size {size}")
        raw = self._source.read((size + BLOCK - 1) // BLOCK * BLOCK)[:size]
        if len(raw) < size:
            raise ArchiveError("archive truncated inside a PAX header")
        records: dict[bytes, bytes] = {}
        pos = 0
        try:
            while pos < size:
                space = raw.index(b" ", pos)
                end = pos + int(raw[pos:space])
                if not space < end <= size or raw[end - 1] != 0x0A:  # a zero length would loop
                    raise ValueError("malformed record")
                key, equals, value = raw[space + 1 : end - 1].partition(b"=")
                if not equals:
                    raise ValueError("malformed record")
                if key.startswith(b"GNU.sparse."):
                    raise ArchiveError("GNU sparse members are not supported: refused")
                records[key] = value
                pos = end
        except (ValueError, IndexError) as exc:
            raise ArchiveError(f"invalid PAX header: {exc}") from exc
        return records


def _byte_sum(block: bytes) -> int:
    # Adler-32's low half is 1 + the byte sum mod 65521: exact for 256 bytes
    # (at most 65280), and ten times faster than sum() over 512 bytes.
    return (adler32(block[:256]) & 0xFFFF) + (adler32(block[256:]) & 0xFFFF) - 2


def _number(field: bytes) -> int:
    """A numeric header field: octal text, or base-256 for large values."""
    if field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0xFF else value
    text = field.rstrip(b"\0 ")  # digits, then NUL or space (the checksum has both)
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ArchiveError(f"invalid number {text[:20]!r} in a tar header") from None


def _text(field: bytes) -> str:
    # UTF-8; undecodable bytes (hdrcharset=BINARY names) are kept as surrogates.
    return field.partition(b"\0")[0].decode("utf-8", "surrogateescape")


def _member(header: bytes, pax: dict[bytes, bytes]) -> Member:
    kind_byte = header[156:157]
    if b"path" in pax:
        name = pax[b"path"].decode("utf-8", "surrogateescape")
    else:
        name, prefix = _text(header[0:100]), _text(header[345:500])
        name = f"{prefix}/{name}" if prefix else name
    kind = _KINDS.get(kind_byte)
    if kind is None:
        what = _REFUSED.get(kind_byte, f"of unsupported type {kind_byte!r}")
        raise ArchiveError(f"member {name!r} is {what}: refused")
    if kind == "dir" or (kind_byte == b"\0" and name.endswith("/")):
        kind, name = "dir", name.rstrip("/") or name
    try:
        size = int(pax[b"size"]) if b"size" in pax else _number(header[124:136])
        uid = int(pax[b"uid"]) if b"uid" in pax else _number(header[108:116])
        gid = int(pax[b"gid"]) if b"gid" in pax else _number(header[116:124])
        mtime_ns = _pax_time(pax[b"mtime"]) if b"mtime" in pax else _number(header[136:148]) * 10**9
    except ValueError:
        raise ArchiveError(f"member {name!r} has an invalid PAX number") from None
    if size < 0 or (kind != "file" and size != 0):
        raise ArchiveError(f"member {name!r} has an invalid size {size}")
    if not (0 <= uid <= MAX_ID and 0 <= gid <= MAX_ID):
        raise ArchiveError(f"member {name!r} has an invalid owner")
    if b"linkpath" in pax:
        linkname = pax[b"linkpath"].decode("utf-8", "surrogateescape")
    else:
        linkname = _text(header[157:257]) if header[157] else ""
    return Member(name, kind, size, _number(header[100:108]) & 0o7777, uid, gid, mtime_ns, linkname)


def _pax_time(raw: bytes) -> int:
    """Exact nanoseconds of a PAX time such as b"1600000000.123456789"."""
    negative = raw.startswith(b"-")
    seconds, _, fraction = raw.removeprefix(b"-").partition(b".")
    if not seconds.isdigit() or not (fraction.isdigit() or not fraction):
        raise ValueError(raw)
    ns = int(seconds) * 10**9 + int((fraction + b"000000000")[:9])
    return -ns if negative else ns


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
