"""Reading an S3 object as a stream: parallel ranged GETs, each resumed
after a dropped connection.

A restore or verify reads archives of many GB straight from S3; nothing is
copied to disk. One GET at a time is slow twice over: a single connection
is bounded by the server's per-connection rate, and the consumer (writing,
hashing, decrypting) waits while it is read. So the stream fetches ranges
of read_chunk_size bytes ahead of the reader, up to `concurrency` at once
on worker threads (as aws s3 cp does: 8 MiB parts, a pool of threads), and
hands them out in order. No range is fetched ahead until the reader reads
on past the end of its first one; then the window doubles with each range
consumed, up to `concurrency`. So a small read (a sidecar, backup.json, an
API range request) costs one GET, and memory stays at most (concurrency +
1) ranges.

Each ranged GET carries If-Match on the ETag, so a concurrent overwrite is
an error rather than a mix of versions. A GET that drops or stalls (the
read timeout) is re-issued from the byte it reached, with backoff, up to
part_attempts times per range."""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from engine.errors import StorageError
from storage.retry import backoff_delay
from storage.s3_config import S3Config, error_code, is_transient, s3_error

log = logging.getLogger(__name__)
# Read a range's body in pieces of this size: a closed stream's fetches stop
# within one piece, and a dropped connection keeps what arrived before it.
_PIECE = 256 * 1024
# What BufferedReader keeps for small reads; large reads go straight through.
_BUFFER = 256 * 1024


class _Abandoned(Exception):
    """The stream was closed or moved elsewhere: this range is not wanted."""


class S3RangeReader(io.RawIOBase):
    def __init__(
        self, client: Any, config: S3Config, key: str, object_key: str, size: int, etag: str
    ) -> None:
        super().__init__()
        self._client = client
        self._config = config
        self._key = key
        self._object_key = object_key
        self._size = size
        self._etag = etag
        self._pos = 0
        self._chunk = config.read_chunk_size
        # The range being handed out: its offset and its bytes.
        self._current_start = 0
        self._current: memoryview = memoryview(b"")
        self._current_buffer: bytearray | None = None
        # Ranges fetched or being fetched, in order: (offset, future).
        self._ahead: deque[tuple[int, Future[memoryview]]] = deque()
        # Range buffers are reused, allocated here and only here: buffers
        # freed on the worker threads would scatter over glibc's per-thread
        # arenas and keep the RSS well above the (concurrency + 1) ranges.
        self._spare: list[bytearray] = []
        self._next = 0  # offset of the next range to ask for
        self._window = 0  # how many ranges may be fetched ahead of the current one
        # A seek elsewhere or a close makes every range in flight stale.
        self._generation = 0
        self._closing = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.reconnects = 0  # how many times a GET was re-issued (tests, logs)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        position = base + offset
        if position < 0:
            raise ValueError("negative seek position")
        self._pos = position
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read of a closed S3 stream")
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        view = self._view_at(self._pos)
        count = min(want, len(view))
        memoryview(buffer).cast("B")[:count] = view[:count]
        self._pos += count
        return count

    # -- the window of ranges ahead -----------------------------------------------

    def _view_at(self, position: int) -> memoryview:
        """The bytes from POSITION to the end of the range holding it."""
        offset = position - self._current_start
        if 0 <= offset < len(self._current):
            return self._current[offset:]
        # Reading on from the end of the current range is a sequential read:
        # worth more ranges ahead. Anything else (the first read, a seek)
        # starts again with none.
        sequential = self._current_buffer is not None and offset == len(self._current)
        self._current = memoryview(b"")
        if self._current_buffer is not None:
            self._spare.append(self._current_buffer)
            self._current_buffer = None
        if sequential:
            self._window = min(max(1, self._window * 2), self._config.concurrency)
        else:
            self._drop_ahead()
            self._next = position
            self._window = 0
        self._fill(at_least=1)
        start, future = self._ahead.popleft()
        self._current = future.result()  # a StorageError after its retries
        self._current_buffer = self._current.obj  # type: ignore[assignment]
        self._current_start = start
        self._fill()
        return self._current

    def _fill(self, at_least: int = 0) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self._config.concurrency, thread_name_prefix="s3-read"
            )
        while len(self._ahead) < max(self._window, at_least) and self._next < self._size:
            length = min(self._chunk, self._size - self._next)
            buffer = self._spare.pop() if self._spare else bytearray(self._chunk)
            future = self._pool.submit(self._fetch, self._next, length, self._generation, buffer)
            self._ahead.append((self._next, future))
            self._next += length

    def _drop_ahead(self) -> None:
        self._generation += 1
        for _start, future in self._ahead:
            # Not started: never runs; running: sees the new generation and
            # stops (its buffer is not reused: the thread may still write it).
            future.cancel()
        self._ahead.clear()

    # -- one range, on a worker thread --------------------------------------------

    def _fetch(self, start: int, length: int, generation: int, buffer: bytearray) -> memoryview:
        view = memoryview(buffer)[:length]
        got = 0
        failures = 0
        while got < length:
            try:
                body = self._get(start + got, start + length - 1, reissued=failures > 0)
                try:
                    while got < length:
                        if self._closing.is_set() or generation != self._generation:
                            raise _Abandoned
                        count = body.readinto(view[got : min(got + _PIECE, length)])
                        if not count:
                            # The server ended the body early: as a dropped connection.
                            raise ConnectionError("the response ended before the range did")
                        got += count
                finally:
                    # A dead connection may fail to close; it is gone either way.
                    with contextlib.suppress(Exception):
                        body.close()
            except (_Abandoned, StorageError):
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise s3_error(self._config, exc, f"reading {self._key}", self._key) from exc
                failures += 1
                if failures >= self._config.part_attempts:
                    raise s3_error(self._config, exc, f"reading {self._key}", self._key) from exc
                log.warning(
                    "%s: reading %s at offset %d: %s, re-issuing the GET",
                    self._config.where,
                    self._key,
                    start + got,
                    type(exc).__name__,
                )
                time.sleep(backoff_delay(failures - 1, base=0.2))
        return view

    def _get(self, first: int, last: int, *, reissued: bool) -> Any:
        if reissued:
            with self._lock:
                self.reconnects += 1
        try:
            response = self._client.get_object(
                Bucket=self._config.bucket,
                Key=self._object_key,
                Range=f"bytes={first}-{last}",
                IfMatch=self._etag,
            )
        except Exception as exc:
            if error_code(exc) in ("PreconditionFailed", "412"):
                raise self._replaced() from exc
            raise
        if response.get("ETag", self._etag) != self._etag:
            # A server that ignores If-Match (s3rver) answers with the new object.
            response["Body"].close()
            raise self._replaced()
        return response["Body"]

    def _replaced(self) -> StorageError:
        return StorageError(
            f"{self._config.where}: {self._key} was replaced while it was being read"
        )

    def close(self) -> None:
        if not self.closed:
            self._closing.set()
            self._drop_ahead()
            self._current = memoryview(b"")
            self._current_buffer = None
            self._spare.clear()
            if self._pool is not None:
                # Fetches in flight stop within a piece (or their read timeout).
                self._pool.shutdown(wait=False, cancel_futures=True)
        super().close()


def open_stream(
    client: Any, config: S3Config, key: str, object_key: str, size: int, etag: str
) -> io.BufferedReader:
    raw = S3RangeReader(client, config, key, object_key, size, etag)
    return io.BufferedReader(raw, buffer_size=_BUFFER)
