"""The archive's tar stream, read once front to back: a read-ahead reader
(Source) whose file data is handed out as ranges of its chunks, never copied,
and the SHA-256 of member data computed as it is read (Hasher), to be
compared with manifest.json once the stream has ended."""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Any, BinaryIO

from engine.errors import ArchiveError, EngineError

CHUNK = 1 << 20
PREFETCH = 16  # chunks read ahead: decompression runs while we write
LARGE_FILE = 1 << 20  # files this large are hashed on the hasher thread


class Source:
    """Forward-only reader over the tar stream. A thread reads ahead (zstd
    releases the GIL, so decompression runs beside our writes). TarReader
    reads headers through read/tell/seek; file data is taken as (buffer,
    start, end) ranges of the read-ahead chunks, never copied."""

    def __init__(self, stream: BinaryIO) -> None:
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(PREFETCH)
        self._stop = threading.Event()
        self._buf = b""
        self._start = 0
        self._pos = 0
        self._eof = False
        self._thread = threading.Thread(target=self._fill, args=(stream,), daemon=True)
        self._thread.start()

    def _fill(self, stream: BinaryIO) -> None:
        try:
            while not self._stop.is_set():
                data = stream.read(CHUNK)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # delivered to the reading thread
            self._put(exc)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def take(self, n: int) -> tuple[bytes, int, int]:
        """Up to N bytes as (buffer, start, end); start == end at the end."""
        if self._start >= len(self._buf):
            if self._eof:
                return b"", 0, 0
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._eof = True
                if isinstance(item, EngineError):
                    raise item
                raise ArchiveError(f"archive stream is unreadable: {item}") from item
            if not item:
                self._eof = True
                return b"", 0, 0
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
        while self.take(CHUNK)[2]:
            pass

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)


class Hasher:
    """SHA-256 of large files, on its own thread: the main thread writes
    while this one hashes (both release the GIL, so two cores work). Small
    files are hashed in place: handing them over costs more than it saves."""

    def __init__(self) -> None:
        self.digests: dict[str, str] = {}  # of every file, small ones included
        self._queue: queue.Queue[tuple[str, memoryview, bool] | None] = queue.Queue(32)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, name: str, data: memoryview, last: bool) -> None:
        self._queue.put((name, data, last))

    def _run(self) -> None:
        running: dict[str, Any] = {}
        while (item := self._queue.get()) is not None:
            name, data, last = item
            try:
                digest = running.pop(name, None) or hashlib.sha256()
                digest.update(data)
                if last:
                    self.digests[name] = digest.hexdigest()
                else:
                    running[name] = digest
            except BaseException as exc:  # reported by finish(); keep draining
                self._error = exc

    def finish(self) -> dict[str, str]:
        self.close()
        if self._error is not None:
            raise self._error
        return self.digests

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
