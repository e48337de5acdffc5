"""What deep verification saw of each tar member, kept on disk, not in memory.

manifest.json comes last in the archive, so every member's record must be
kept until it can be compared. A record costs a few hundred bytes as Python
objects, so millions of files would grow the process by gigabytes: records
are marshalled in batches into an anonymous temporary file instead, and read
back in order. Duplicate names are found from that file too, a bounded
number of name hashes at a time.
"""

from __future__ import annotations

import marshal
import os
import struct
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any, NamedTuple

BATCH = 1024  # records marshalled together: marshal's cost is per call, not per record
DUPLICATE_PARTITION = 1 << 14  # name hashes held in memory at once, at most ~1.5 MB
MAX_PARTITIONS = 512  # open temporary files; beyond, partitions grow past the bound
_LENGTH = struct.Struct("<Q")
_HASH = struct.Struct("<q")


class SeenMember(NamedTuple):
    """What the tar said about a member, and the SHA-256 of a file's content."""

    name: str
    kind: str
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    linkname: str
    sha256: str | None


class MemberLog:
    """Records appended in tar order, read back in the same order (any
    number of times). Close it (or use it as a context manager) to free the file."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="verify-members-")  # noqa: SIM115 - closed by close()
        self._batch: list[tuple[object, ...]] = []
        self.count = 0

    def add(self, record: tuple[Any, ...]) -> None:
        """RECORD: the fields of a SeenMember, as a plain tuple (marshal takes no other)."""
        self._batch.append(record)
        self.count += 1
        if len(self._batch) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            blob = marshal.dumps(self._batch)
            self._file.seek(0, os.SEEK_END)  # a reading pass may have left it anywhere
            self._file.write(_LENGTH.pack(len(blob)) + blob)
            self._batch = []

    def __iter__(self) -> Iterator[SeenMember]:
        self._flush()
        self._file.seek(0)
        read = self._file.read
        while header := read(_LENGTH.size):
            (length,) = _LENGTH.unpack(header)
            yield from map(SeenMember._make, marshal.loads(read(length)))  # noqa: S302 - our own records

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> MemberLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def duplicate_names(log: MemberLog) -> list[str]:
    """Names that occur more than once, in memory bounded by
    DUPLICATE_PARTITION hashes: with more members, the 64-bit name hashes are
    first spread over temporary files by value, and each file is checked on
    its own. Equal hashes are then confirmed by name (a collision is not a
    duplicate)."""
    partitions = min(MAX_PARTITIONS, -(-log.count // DUPLICATE_PARTITION))
    if partitions <= 1:
        repeated = _repeated(hash(member.name) for member in log)
    else:
        with ExitStack() as stack:
            files = [
                stack.enter_context(tempfile.TemporaryFile(prefix="verify-names-"))
                for _ in range(partitions)
            ]
            for member in log:
                value = hash(member.name)
                files[value % partitions].write(_HASH.pack(value))
            repeated = set()
            for file in files:
                file.seek(0)
                repeated |= _repeated(value for (value,) in _HASH.iter_unpack(file.read()))
    if not repeated:
        return []
    seen: set[str] = set()
    duplicates: dict[str, None] = {}  # in order of first repetition, each name once
    for member in log:
        if hash(member.name) in repeated:
            if member.name in seen:
                duplicates[member.name] = None
            seen.add(member.name)
    return list(duplicates)


def _repeated(values: Iterator[int]) -> set[int]:
    seen: set[int] = set()
    repeated: set[int] = set()
    for value in values:
        if value in seen:
            repeated.add(value)
        seen.add(value)
    return repeated
