"""Change detection of an incremental backup against its parent's index.

A regular file is unchanged when its size, mtime (ns), ctime (ns), inode,
mode and owner all match the parent's entry: then its bytes are not read
again, and its index line is carried over (with the archive that holds its
bytes). Anything else is written again. ctime is what makes this safe: it
moves on every write, chmod, chown, rename into place and link count change,
and no program can set it back, so a file rewritten with its old size and
mtime restored (rsync -t, tar -x) is still seen as changed.

Directories, symlinks and hardlinks are always written (a header each, no
data): the newest archive of a chain holds every one of them, exact. So is
a regular file with more than one name (its bytes too): a hardlink member
must point to an earlier member of its own archive. Paths
of the parent that this backup no longer has, or has as another type, are
the manifest's `deleted` list: remove them before extracting this archive.

Memory: the parent's lines are not kept. Each entry is one packed record
(what visit() compares, and where its line is in the parent's index file),
about 280 bytes with its path: 50,000 files take some 14 MB. A carried or
delta-base line is read again from the file (page cache) when needed.
Holding the parsed lines instead cost 1.8 KB per file (93 MiB for 51,550
files in bench_incremental: an incremental peaked 80 MiB above a full).
"""

from __future__ import annotations

import json
import os
import stat
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from engine.incremental.index import IndexUnusable, index_line, read_index_lines

# type code, carryable, size, mtime_ns, ctime_ns, ino, mode, uid, gid (the
# identity: -1 where the index has none, which no stat matches), then the
# line's offset and length in its index.
_RECORD = struct.Struct("<BBqqqqqqqqq")
_NONE = -1
_Line = tuple[dict[str, Any], int, int]  # an entry, its line's offset and length


class _Lines(Protocol):
    def read(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


class _IndexFile:
    """The parent's index file, its lines read again by offset."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def read(self, offset: int, length: int) -> bytes:
        line = os.pread(self._fd, length, offset)
        if len(line) != length:
            raise IndexUnusable(f"index {self._path} changed while a backup read it")
        return line

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


class _Memory:
    """Lines kept in one buffer: entries given as dicts (tests, tools)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.buffer[offset : offset + length])

    def close(self) -> None:
        pass


def _int(value: Any) -> int:
    return _NONE if value is None else int(value)


class ParentState:
    """The parent's volume entries, consumed as the new backup walks. Each
    call to visit() takes the entry of one path; what is left at the end was
    deleted."""

    def __init__(self, parent_backup_id: str, entries: Iterable[dict[str, Any]]) -> None:
        """From ENTRIES as dicts (their lines are kept in memory)."""
        memory = _Memory()
        lines = []
        for entry in entries:
            line = index_line(entry)
            lines.append((entry, len(memory.buffer), len(line)))
            memory.buffer += line
        self._setup(parent_backup_id, lines, memory)

    @classmethod
    def from_index(cls, path: Path, backup_id: str) -> ParentState:
        """From the index file at PATH, BACKUP_ID's (IndexUnusable if it is not)."""
        _header, lines = read_index_lines(path, backup_id)
        state = cls.__new__(cls)
        state._setup(backup_id, lines, _IndexFile(path))
        return state

    def _setup(self, parent_backup_id: str, lines: Iterable[_Line], source: _Lines) -> None:
        self.parent_backup_id = parent_backup_id
        self._source = source
        self._types: list[str] = []
        codes: dict[str, int] = {}
        self._entries: dict[str, bytes] = {}
        for entry, offset, length in lines:
            kind = entry["type"]
            code = codes.setdefault(kind, len(codes))
            if code == len(self._types):
                self._types.append(kind)
            carryable = "stored_in" in entry and not entry.get("changed_during_read")
            self._entries[entry["path"]] = _RECORD.pack(
                code, carryable, entry["size"], _int(entry.get("mtime_ns")),
                _int(entry.get("ctime_ns")), _int(entry.get("ino")), entry["mode"],
                entry["uid"], entry["gid"], offset, length,
            )  # fmt: skip
        self._replaced: list[str] = []  # same path, another type; or not stored after all
        self._last: str | None = None  # the last path visit() found in the parent
        self._last_file: tuple[int, int] | None = None  # its line, if it is a file
        self.carried_files = 0
        self.carried_bytes = 0

    @property
    def last_file(self) -> dict[str, Any] | None:
        """The parent's line of the file visit() last said to write again: a
        delta's base (engine.incremental.delta), None if there is none."""
        if self._last_file is None:
            return None
        return json.loads(self._source.read(*self._last_file))

    def visit(self, name: str, kind: str, st: os.stat_result) -> bytes | None:
        """NAME is in the new backup as KIND (ST: its lstat). Returns the
        parent's index line (bytes, newline included) when NAME is a regular
        file whose bytes need not be written again, else None (write it)."""
        record = self._entries.pop(name, None)
        self._last = None if record is None else name
        self._last_file = None
        if record is None:
            return None
        code, carryable, *identity, offset, length = _RECORD.unpack(record)
        if self._types[code] != kind:
            self._replaced.append(name)
            return None
        if kind != "file":
            return None
        self._last_file = (offset, length)
        if not carryable or st.st_nlink > 1:
            # A copy read while it changed may be torn: never carried over.
            # A file of several names is written again (see above).
            return None
        now = [
            st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
            stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
        ]  # fmt: skip
        if now != identity:
            return None
        self.carried_files += 1
        self.carried_bytes += st.st_size
        return self._source.read(offset, length)

    def close(self) -> None:
        """Let go of the parent's index file (after the walk)."""
        self._source.close()

    def gone(self, name: str) -> None:
        """NAME, just visited, was not stored after all (it vanished or
        changed type while the backup read it): it is deleted too."""
        if self._last == name:
            self._replaced.append(name)

    def deleted(self) -> list[str]:
        """Paths to remove before extracting the new archive: gone since the
        parent, or there as another type. Call after the walk."""
        return sorted({*self._entries, *self._replaced})
