"""Reading a live file into a tar member of a fixed size.

A tar header states the size before the content, but a live volume may
change while we read it. Like GNU tar, we store exactly the size announced:
a file that shrank is padded with zeros, one that grew is cut, and the entry
is flagged `changed_during_read`. Holes of sparse files are not read from disk
(SEEK_DATA/SEEK_HOLE): they are produced as zeros, which zstd compresses to
almost nothing, so a 10 GB sparse disk image does not cost 10 GB of reads.
"""

from __future__ import annotations

import hashlib
import os

_ZEROS = bytes(1024 * 1024)


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

    def __init__(self, fd: int, size: int, sparse: bool) -> None:
        self._fd = fd
        self._size = size
        self._pos = 0
        self.sha256 = hashlib.sha256()
        self.changed = False
        # Without holes, one segment covers the file: read it straight.
        self._segments = data_segments(fd, size) if sparse else [(0, size)]
        self._segment_index = 0

    def _next_chunk(self, limit: int) -> bytes:
        while self._segment_index < len(self._segments):
            start, end = self._segments[self._segment_index]
            if self._pos >= end:
                self._segment_index += 1
                continue
            if self._pos < start:  # in a hole before this segment
                return _ZEROS[: min(limit, start - self._pos, len(_ZEROS))]
            data = os.pread(self._fd, min(limit, end - self._pos), self._pos)
            if not data:  # the file shrank while we read it
                self.changed = True
                self._segments = self._segments[: self._segment_index]
                break
            return data
        # Past the last data segment: trailing hole, or padding for a shrunk file.
        return _ZEROS[: min(limit, self._size - self._pos, len(_ZEROS))]

    def read(self, n: int = -1) -> bytes:
        """Exactly min(N, bytes left) bytes: tarfile treats a short read as
        the end of the data."""
        remaining = self._size - self._pos
        if remaining <= 0:
            return b""
        limit = remaining if n is None or n < 0 else min(n, remaining)
        chunk = self._next_chunk(limit)
        if len(chunk) < limit:
            parts = [chunk]
            got = len(chunk)
            self._pos += got
            while got < limit:
                part = self._next_chunk(limit - got)
                parts.append(part)
                got += len(part)
                self._pos += len(part)
            self._pos -= got
            chunk = b"".join(parts)
        self._pos += len(chunk)
        self.sha256.update(chunk)
        return chunk

    def finish(self) -> None:
        """Note whether the file grew beyond the size we announced."""
        if os.fstat(self._fd).st_size != self._size:
            self.changed = True
