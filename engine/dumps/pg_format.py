"""The pg_dump custom-format archive structure, checked without a server.

`pg_restore --list` reads only the front of a file, so a dump cut short by a
full disk or a killed tool would pass it; walking the table of contents and
every data block to its end marker catches that."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.errors import DatabaseDumpError

# The layout pg_dump writes (src/bin/pg_dump/pg_backup_archiver.c WriteHead,
# WriteToc; pg_backup_custom.c for data blocks), archive versions 1.12
# (PostgreSQL 9.x) to 1.16 (PostgreSQL 17). Integers are a sign byte plus
# int_size little-endian bytes; strings an integer length (-1: NULL) plus
# bytes; each data block is a type byte, a dump id, then length-prefixed
# chunks ending with a zero length.

MAGIC = b"PGDMP"
ARCH_CUSTOM = 1
BLK_DATA, BLK_BLOBS = 1, 3
OFFSET_FLAGS = (1, 2, 3)  # position not set, position set, no data
SUPPORTED = ((1, 12), (1, 16))
_WINDOW = 1 << 20


class NewerFormat(DatabaseDumpError):
    """The file comes from a pg_dump newer than this parser knows."""


@dataclass(frozen=True)
class CustomStructure:
    version: str  # archive format version, e.g. "1.14"
    database: str
    server_version: str
    toc_entries: int
    data_blocks: int
    toc_end: int  # file offset where the TOC ends and data begins


class _Cursor:
    """Reads a large file through a 1 MiB window: one Python step per data
    chunk (pg_dump writes a chunk per row), skipping payloads by seeking."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f = f
        self.size = size
        self.buf = b""
        self.off = 0
        self.base = 0  # file offset of buf[0]
        self.int_size = 4
        self.off_size = 8

    @property
    def pos(self) -> int:
        return self.base + self.off

    def _fill(self, n: int) -> None:
        if len(self.buf) - self.off >= n:
            return
        rest = self.buf[self.off :]
        self.base += self.off
        self.buf = rest + self.f.read(max(n - len(rest), _WINDOW))
        self.off = 0
        if len(self.buf) < n:
            raise DatabaseDumpError(
                f"the custom-format dump is truncated or corrupt (ends at byte {self.size})"
            )

    def at_end(self) -> bool:
        if self.off < len(self.buf):
            return False
        return self.pos >= self.size

    def take(self, n: int) -> bytes:
        self._fill(n)
        data = self.buf[self.off : self.off + n]
        self.off += n
        return data

    def byte(self) -> int:
        return self.take(1)[0]

    def skip(self, n: int) -> None:
        if n <= len(self.buf) - self.off:
            self.off += n
            return
        target = self.pos + n
        if target > self.size:
            raise DatabaseDumpError(
                f"the custom-format dump is truncated or corrupt (ends at byte {self.size})"
            )
        self.f.seek(target)
        self.base, self.buf, self.off = target, b"", 0

    def int(self) -> int:
        width = 1 + self.int_size
        self._fill(width)
        sign = self.buf[self.off]
        value = int.from_bytes(self.buf[self.off + 1 : self.off + width], "little")
        self.off += width
        return -value if sign else value

    def str(self) -> str | None:
        length = self.int()
        if length < 0:
            return None
        if length > self.size:
            raise DatabaseDumpError("corrupt custom-format dump (impossible string length)")
        return self.take(length).decode("utf-8", "replace")


def read_structure(path: Path, walk_data: bool = True) -> CustomStructure:
    """Parse header and TOC and (WALK_DATA) every data block of a custom-format
    dump; raise DatabaseDumpError on anything pg_restore would choke on:
    wrong magic, unsupported version, a cut TOC, a cut or missing data
    block, unknown block types, trailing garbage."""
    with path.open("rb") as f:
        c = _Cursor(f, os.fstat(f.fileno()).st_size)
        (vmaj, vmin, vrev), database, server_version = _read_header(c)
        with_data = _read_toc(c, (vmaj, vmin))
        toc_end = c.pos
        blocks = _walk_data(c, with_data) if walk_data else 0
    return CustomStructure(
        version=f"{vmaj}.{vmin}.{vrev}",
        database=database,
        server_version=server_version,
        toc_entries=len(with_data[1]),
        data_blocks=blocks,
        toc_end=toc_end,
    )


def _read_header(c: _Cursor) -> tuple[tuple[int, int, int], str, str]:
    """((major, minor, revision), database, server_version); C is left at the TOC."""
    if c.size < len(MAGIC) or c.take(len(MAGIC)) != MAGIC:
        raise DatabaseDumpError('not a pg_dump custom-format file (no "PGDMP" magic)')
    vmaj, vmin = c.byte(), c.byte()
    vrev = c.byte()  # present since 1.1
    if (vmaj, vmin) > SUPPORTED[1]:
        raise NewerFormat(f"custom-format version {vmaj}.{vmin} is newer than this checker")
    if (vmaj, vmin) < SUPPORTED[0]:
        raise DatabaseDumpError(f"unsupported custom-format version {vmaj}.{vmin}")
    c.int_size, c.off_size = c.byte(), c.byte()
    if not (1 <= c.int_size <= 8 and 1 <= c.off_size <= 16):
        raise DatabaseDumpError("corrupt custom-format header (integer sizes)")
    if c.byte() != ARCH_CUSTOM:
        raise DatabaseDumpError("not a custom-format dump (tar or directory format?)")
    if (vmaj, vmin) >= (1, 15):
        c.byte()  # compression algorithm
    else:
        c.int()  # compression level
    for _ in range(7):  # creation time: sec, min, hour, mday, mon, year, isdst
        c.int()
    database = c.str() or ""
    server_version = c.str() or ""
    c.str()  # pg_dump version
    return (vmaj, vmin, vrev), database, server_version


def _read_toc(
    c: _Cursor, version: tuple[int, int], names: dict[int, tuple[str, str, str]] | None = None
) -> tuple[set[int], list[int]]:
    """(ids of entries that have a data block, all entry ids). NAMES, when
    given, gets (desc, namespace, tag) of each entry, e.g. ("TABLE DATA",
    "public", "res_users"): what the row counts are keyed by."""
    count = c.int()
    if count < 0 or count > c.size:
        raise DatabaseDumpError("corrupt custom-format dump (TOC count)")
    with_data: set[int] = set()
    ids: list[int] = []
    for _ in range(count):
        dump_id = c.int()
        had_dumper = c.int()
        if dump_id <= 0:
            raise DatabaseDumpError("corrupt custom-format dump (TOC entry id)")
        # tableoid, oid, tag, desc
        _tableoid, _oid, tag, desc = c.str(), c.str(), c.str(), c.str()
        c.int()  # section
        # defn, drop, copy statement, namespace, tablespace
        _defn, _drop, _copy, namespace, _space = c.str(), c.str(), c.str(), c.str(), c.str()
        if version >= (1, 14):
            c.str()  # table access method
        if version >= (1, 16):
            c.int()  # relkind
        c.str()  # owner
        c.str()  # "false": WITH OIDS, long gone
        while c.str() is not None:  # dependencies, NULL-terminated
            pass
        flag = c.byte()
        c.skip(c.off_size)  # data offset (unset when pg_dump wrote to a pipe)
        if flag not in OFFSET_FLAGS:
            raise DatabaseDumpError("corrupt custom-format dump (TOC data offset)")
        if had_dumper:
            with_data.add(dump_id)
        ids.append(dump_id)
        if names is not None:
            names[dump_id] = (desc or "", namespace or "", tag or "")
    return with_data, ids


def _walk_data(c: _Cursor, toc: tuple[set[int], list[int]]) -> int:
    expected, _ = toc
    seen: set[int] = set()
    while not c.at_end():
        block_type = c.byte()
        dump_id = c.int()
        if dump_id not in expected or dump_id in seen:
            raise DatabaseDumpError(f"corrupt custom-format dump (unexpected data block {dump_id})")
        if block_type == BLK_DATA:
            _skip_chunks(c)
        elif block_type == BLK_BLOBS:
            while c.int() != 0:  # large object oid; 0 ends the list
                _skip_chunks(c)
        else:
            raise DatabaseDumpError(f"corrupt custom-format dump (block type {block_type})")
        seen.add(dump_id)
    missing = len(expected - seen)
    if missing:
        raise DatabaseDumpError(
            f"the custom-format dump is truncated ({missing} data blocks missing)"
        )
    return len(seen)


def _skip_chunks(c: _Cursor) -> None:
    while True:
        length = c.int()
        if length == 0:
            return
        if length < 0:
            raise DatabaseDumpError("corrupt custom-format dump (negative chunk length)")
        c.skip(length)
