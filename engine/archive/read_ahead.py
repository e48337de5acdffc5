"""Reading streams ahead on threads of their own, shared by restore and deep
verification.

Decompression, decryption, file reads and hashing release the GIL, so a
stage that pulls chunks out of its stream on its own thread runs on another
core than the one consuming them. Source is the tar stream's reader (member
data handed out as ranges of its chunks, never copied); ReadAheadReader is a
plain file-like stage, e.g. the stored file under the decryptor or the
decompressor, optionally hashing every chunk it reads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

from engine.errors import ArchiveError, EngineError

CHUNK = 1 << 20
PREFETCH = 16  # chunks read ahead: decompression runs while we write


class _Prefetcher:
    """A thread reading STREAM in chunks into a bounded queue; ON_CHUNK (if
    given) sees every chunk on that thread, before it is queued."""

    def __init__(
        self,
        stream: Any,
        chunk_size: int,
        depth: int,
        on_chunk: Callable[[bytes], object] | None = None,
        name: str | None = None,
    ) -> None:
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(depth)
        self._chunk_size = chunk_size
        self._on_chunk = on_chunk
        self._stop = threading.Event()
        self.bytes_read = 0  # counted on the reading thread
        self._thread = threading.Thread(target=self._fill, args=(stream,), name=name, daemon=True)
        self._thread.start()

    def _fill(self, stream: Any) -> None:
        try:
            while not self._stop.is_set():
                data = stream.read(self._chunk_size)
                if data and self._on_chunk is not None:
                    self._on_chunk(data)
                self.bytes_read += len(data)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # delivered to the consuming thread
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def get(self) -> bytes | BaseException:
        """The next chunk (b"" at the end), or the exception the thread hit."""
        return self._queue.get()

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)


class Source:
    """Forward-only reader over the tar stream. A thread reads ahead (zstd
    releases the GIL, so decompression runs beside our writes). TarReader
    reads headers through read/tell/seek; file data is taken as (buffer,
    start, end) ranges of the read-ahead chunks, never copied."""

    def __init__(self, stream: BinaryIO, chunk_size: int = CHUNK, prefetch: int = PREFETCH) -> None:
        self._chunk_size = chunk_size
        self._buf = b""
        self._start = 0
        self._pos = 0
        self._eof = False
        self._prefetcher = _Prefetcher(stream, chunk_size, prefetch)

    def take(self, n: int) -> tuple[bytes, int, int]:
        """Up to N bytes as (buffer, start, end); start == end at the end."""
        if self._start >= len(self._buf):
            if self._eof:
                return b"", 0, 0
            item = self._prefetcher.get()
            if isinstance(item, BaseException):
                self._eof = True
                if isinstance(item, EngineError):
                    raise item
                raise ArchiveError(f"archive stream is unreadable: {item}") from item
            if not item:
                self._eof = True
                return b"", 0, 0
            if type(item) is not bytes:  # a view (a ReadAheadReader below): headers need bytes
                item = bytes(item)
            self._buf, self._start = item, 0
        start = self._start
        end = min(len(self._buf), start + n)
        self._start = end
        self._pos += end - start
        return self._buf, start, end

    def read(self, n: int) -> bytes:
        start = self._start
        if start + n <= len(self._buf):  # the common case: a header in this chunk
            self._start = start + n
            self._pos += n
            return self._buf[start : start + n]
        parts = []
        while n > 0:
            buf, start, end = self.take(n)
            if start == end:
                break
            parts.append(buf[start:end])
            n -= end - start
        return b"".join(parts)

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int) -> int:
        if pos == self._pos:
            return pos
        if pos < self._pos:
            raise ArchiveError("archive stream cannot seek backwards")
        while self._pos < pos:
            _, start, end = self.take(pos - self._pos)
            if start == end:
                break
        return self._pos

    def drain(self) -> None:
        """Read to the end, so the decompressor and decryptor check the
        stream's own end (truncation, authentication of the last chunk)."""
        while self.take(self._chunk_size)[2]:
            pass

    def close(self) -> None:
        self._prefetcher.close()


class ReadAheadReader:
    """File-like, forward-only reader of STREAM through a read-ahead thread.
    read(n) returns at most n bytes (fewer is not the end; b"" is) as a
    bytes-like object: a whole chunk as it was read, or a memoryview of part
    of one, so nothing is copied (zstd, AgeReader and bytearray take views;
    ISA-L's gzip pulls with readinto, which copies). Exceptions the thread
    hits are raised by read, as they are. ON_CHUNK sees every chunk on the
    reading thread: e.g. hashlib's update, which then runs beside the consumer."""

    def __init__(
        self,
        stream: Any,
        chunk_size: int = CHUNK,
        depth: int = PREFETCH,
        on_chunk: Callable[[bytes], object] | None = None,
        name: str | None = None,
    ) -> None:
        self._buf = b""
        self._view = memoryview(self._buf)
        self._start = 0
        self._eof = False
        self._prefetcher = _Prefetcher(stream, chunk_size, depth, on_chunk, name)

    @property
    def bytes_read(self) -> int:
        """Bytes read from STREAM so far (ahead of what read() returned)."""
        return self._prefetcher.bytes_read

    def _next_chunk(self) -> bool:
        if self._eof:
            return False
        item = self._prefetcher.get()
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        if not item:
            self._eof = True
            return False
        self._buf, self._view, self._start = item, memoryview(item), 0
        return True

    def read(self, n: int | None = -1) -> bytes | memoryview:
        if n is None or n < 0:
            parts = [self._view[self._start :]]
            while self._next_chunk():
                parts.append(self._view)
            self._start = len(self._buf)
            return b"".join(parts)
        if self._start >= len(self._buf) and not self._next_chunk():
            return b""
        start = self._start
        end = min(len(self._buf), start + n)
        self._start = end
        return self._buf if start == 0 and end == len(self._buf) else self._view[start:end]

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._prefetcher.close()
