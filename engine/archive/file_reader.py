"""Reading a live file into a tar member of a fixed size.

A tar header states the size before the content, but a live volume may
change while we read it. Like GNU tar, we store exactly the size announced:
a file that shrank is padded with zeros, one that grew is cut, and the entry
is flagged `changed_during_read`; so is one written in place, whose size,
mtime or ctime after the read differ from those before it. Holes of sparse
files are not read from disk (SEEK_DATA/SEEK_HOLE): they are produced as
zeros, which zstd compresses to almost nothing, so a 10 GB sparse disk image
does not cost 10 GB of reads.
"""

from __future__ import annotations

import hashlib
import os

_ZEROS = bytes(4 * 1024 * 1024)
_ZEROS_VIEW = memoryview(_ZEROS)


def data_segments(fd: int, size: int) -> list[tuple[int, int]]:
    """(start, end) byte ranges holding data; the rest are holes."""
    segments: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        segments.append((start, end))
        pos = end
    return segments


class FixedSizeFileReader:
    """File-like over an open fd: yields exactly SIZE bytes and hashes them."""

    def __init__(
        self, fd: int, size: int, sparse: bool, hashing: bool = True,
        before: os.stat_result | None = None,
    ) -> None:  # fmt: skip
        """BEFORE: the fd's fstat taken before the read, which finish() compares."""
        self._fd = fd
        self._size = size
        self._before = _identity(before) if before is not None else None
        self._pos = 0
        self.sha256 = hashlib.sha256()
        self._hashing = hashing  # False: the caller hashes what it is given
        self.changed = False
        # Without holes, one segment covers the file: read it straight.
        self._segments = data_segments(fd, size) if sparse else [(0, size)]
        self._segment_index = 0

    def readinto(self, buffer: memoryview) -> int:
        """Fill BUFFER with the next min(len(BUFFER), bytes left) bytes, hash
        them, and return the count. Data goes from the page cache straight into
        the caller's buffer (os.preadv): no per-chunk bytes objects."""
        limit = min(len(buffer), self._size - self._pos)
        got = 0
        while got < limit:
            got += self._next_into(buffer[got:limit])
        if self._hashing:
            self.sha256.update(buffer[:limit])  # releases the GIL on large buffers
        return limit

    def _next_into(self, view: memoryview) -> int:
        while self._segment_index < len(self._segments):
            start, end = self._segments[self._segment_index]
            if self._pos >= end:
                self._segment_index += 1
                continue
            if self._pos < start:  # in a hole before this segment
                n = min(len(view), start - self._pos, len(_ZEROS))
                view[:n] = _ZEROS_VIEW[:n]
                self._pos += n
                return n
            n = os.preadv(self._fd, [view[: min(len(view), end - self._pos)]], self._pos)
            if n == 0:  # the file shrank while we read it
                self.changed = True
                self._segments = self._segments[: self._segment_index]
                break
            self._pos += n
            return n
        # Past the last data segment: trailing hole, or padding for a shrunk file.
        n = min(len(view), self._size - self._pos, len(_ZEROS))
        view[:n] = _ZEROS_VIEW[:n]
        self._pos += n
        return n

    def read(self, n: int = -1) -> bytes:
        """Exactly min(N, bytes left) bytes (a short read would mean the end)."""
        remaining = self._size - self._pos
        limit = remaining if n is None or n < 0 else min(n, remaining)
        buffer = bytearray(max(limit, 0))
        return bytes(buffer[: self.readinto(memoryview(buffer))])

    def finish(self) -> None:
        """Note whether the file changed while we read it. Like GNU tar ("file
        changed as we read it"): its size, mtime or ctime is not what the fstat
        before the read said; a write in place keeps the size but moves mtime
        and ctime. Without BEFORE, only a size other than the announced one."""
        after = os.fstat(self._fd)
        if after.st_size != self._size or (
            self._before is not None and _identity(after) != self._before
        ):
            self.changed = True


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    """What a write to the file changes (ctime too: a write that resets mtime)."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns
