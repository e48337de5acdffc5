"""The filesystem side of extraction: everything is written relative to
directory fds opened one component at a time with O_NOFOLLOW, files created
with O_EXCL, so nothing is ever written through a symlink, whether an earlier
member made it or it was already on disk. File data is written sparse-aware
(zero runs become holes, as in the source), then owners, modes and mtimes
are applied."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from engine.archive.manifest import ManifestEntry
from engine.archive.read_ahead import CHUNK, Source
from engine.archive.tar_reader import Member
from engine.errors import ArchiveError
from engine.restore.file_hashes import FileHashes

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FD_CACHE = 64
HOLE_MIN = 4096  # zero runs at least this long are left as holes
_ZERO_RUN = bytes(HOLE_MIN)
_ZERO_CHUNK = bytes(CHUNK)
_NONZERO = re.compile(rb"[^\x00]")


class Tree:
    """One extraction root (a staging or spool dir), written only through
    directory fds opened one component at a time with O_NOFOLLOW."""

    def __init__(self, root: Path) -> None:
        self.fd = os.open(root, _DIR_OPEN)
        self._fds: dict[tuple[str, ...], int] = {(): self.fd}
        self.dirs: set[tuple[str, ...]] = {()}  # created by this extraction (and the root)

    def dir_fd(self, parts: tuple[str, ...]) -> int:
        fd = self._fds.get(parts)
        if fd is not None:
            return fd
        known = len(parts) - 1
        while parts[:known] not in self._fds:
            known -= 1
        fd = self._fds[parts[:known]]
        for depth in range(known, len(parts)):
            fd = os.open(parts[depth], _DIR_OPEN, dir_fd=fd)
            self._fds[parts[: depth + 1]] = fd
        return fd

    def make_dirs(self, parts: tuple[str, ...]) -> int:
        """PARTS as directories (0700) this extraction creates; the fd of the last."""
        for depth in range(1, len(parts) + 1):
            if parts[:depth] not in self.dirs:
                os.mkdir(parts[depth - 1], 0o700, dir_fd=self.dir_fd(parts[: depth - 1]))
                self.dirs.add(parts[:depth])
        return self.dir_fd(parts)

    def fix_file(self, parts: tuple[str, ...], entry: ManifestEntry, fill: bool) -> None:
        parent = self.dir_fd(parts[:-1])
        if entry.type == "symlink":
            ns = (entry.mtime_ns, entry.mtime_ns)
            os.utime(parts[-1], ns=ns, dir_fd=parent, follow_symlinks=False)
            return
        fd = os.open(parts[-1], os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            if fill:  # allocate the holes: same content, as the source was
                os.posix_fallocate(fd, 0, entry.size)
                os.fchmod(fd, entry.mode)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        finally:
            os.close(fd)

    def trim(self) -> None:
        """Bound the open fds; called between members, never while one is in use."""
        if len(self._fds) > FD_CACHE:
            for parts, fd in self._fds.items():
                if parts:
                    os.close(fd)
            self._fds = {(): self.fd}

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}


def write_file(
    parent: int, leaf: str, member: Member, name: str, source: Source, hasher: FileHashes,
    owner: bool,
) -> bool:  # fmt: skip
    """Create LEAF (never existing, never through a symlink) and fill it.
    True when zero runs were left out (see write_data)."""
    fd = os.open(leaf, _CREATE, 0o600, dir_fd=parent)
    try:
        holes = write_data(fd, source, member.size, name, hasher)
        _finish_file(fd, member, owner)
    finally:
        os.close(fd)
    return holes


def _finish_file(fd: int, member: Member, owner: bool) -> None:
    """After the data: owner, mode (after chown, which clears setuid bits), mtime."""
    if owner:
        os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode)
    os.utime(fd, ns=(member.mtime_ns, member.mtime_ns))


def write_data(fd: int, source: Source, size: int, name: str, hasher: FileHashes) -> bool:
    """Copy SIZE bytes of member data into FD (new, so empty) and hand them to
    the hasher. Zero runs are not written: they read back as zeros, and long
    ones become holes as in the source. True when any zeros were skipped."""
    buf, start, end = source.take(size) if size else (b"", 0, 0)
    if end - start == size:  # all of it in one chunk: nearly every small file
        hasher.whole(name, memoryview(buf)[start:end])
        if not size:
            return False
        data_end, holes = _write_piece(fd, buf, start, end, 0)
    else:
        offset = data_end = 0
        holes = False
        while True:
            if start == end:
                raise ArchiveError(f"archive truncated inside member {name!r}")
            piece = end - start
            hasher.piece(name, memoryview(buf)[start:end], offset + piece == size)
            written, skipped = _write_piece(fd, buf, start, end, offset)
            data_end, holes = max(data_end, written), holes or skipped
            offset += piece
            if offset == size:
                break
            buf, start, end = source.take(size - offset)
    if data_end < size:  # ends with zeros: the size comes from truncate
        os.ftruncate(fd, size)
    return holes


def _write_piece(fd: int, buf: bytes, start: int, end: int, offset: int) -> tuple[int, bool]:
    """Write buf[start:end] at file OFFSET, leaving out zero runs of HOLE_MIN
    bytes or more (and small all-zero pieces). Returns (file offset past the
    last byte written, or 0; whether anything was left out)."""
    view = memoryview(buf)
    if end - start < HOLE_MIN:
        if buf[start] == 0 and buf.count(0, start, end) == end - start:
            return 0, True
        _pwrite(fd, view[start:end], offset)
        return offset + end - start, False
    # Any run of HOLE_MIN zeros covers two consecutive samples HOLE_MIN/2
    # apart: without a "\0\0" among them there is no run (the common case).
    if b"\0\0" not in buf[start : end : HOLE_MIN // 2]:
        _pwrite(fd, view[start:end], offset)
        return offset + end - start, False
    if end - start == CHUNK and buf.startswith(_ZERO_CHUNK, start):
        return 0, True
    pos = search = start
    last = 0
    skipped = False
    while (zero := buf.find(_ZERO_RUN, search, end)) >= 0:
        run_end = zero + HOLE_MIN
        while run_end + HOLE_MIN <= end and buf.startswith(_ZERO_RUN, run_end):
            run_end += HOLE_MIN
        nonzero = _NONZERO.search(buf, run_end, min(end, run_end + HOLE_MIN))
        run_end = nonzero.start() if nonzero else min(end, run_end + HOLE_MIN)
        if zero > pos:
            _pwrite(fd, view[pos:zero], offset + pos - start)
            last = offset + zero - start
        pos = search = run_end
        skipped = True
    if pos < end:
        _pwrite(fd, view[pos:end], offset + pos - start)
        last = offset + end - start
    return last, skipped


def _pwrite(fd: int, data: memoryview, offset: int) -> None:
    while data:
        done = os.pwrite(fd, data, offset)
        if done <= 0:
            raise OSError(errno.EIO, "write made no progress")
        data = data[done:]
        offset += done
