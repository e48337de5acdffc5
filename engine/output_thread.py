"""The last stage of the backup pipeline, on its own thread.

The compressor hands its output to write() from the thread that feeds it,
which also hashes every file. Encrypting, hashing the stored bytes and
writing them to storage take about a second per GB more; done on that same
thread they would make it the bottleneck while a core waits. OutputThread
queues the compressed pieces (zstd hands out a fresh bytes object each time,
so nothing is copied) and a second thread does the rest: ChaCha20, SHA-256
and os.write all release the GIL.
"""

from __future__ import annotations

import queue
import threading
from typing import Protocol

QUEUE_DEPTH = 32  # pieces in flight; zstd hands out ~128 KiB pieces
# ISA-L's gzip hands out pieces of several MiB: they are queued in slices of
# at most this size, so memory in flight stays bounded (32 x 512 KiB).
MAX_PIECE = 512 * 1024


class Sink(Protocol):
    def write(self, data: bytes | memoryview) -> int: ...


class OutputThread:
    """write() queues, a thread writes to OUT in order. The first error OUT
    raises is raised again by the next write() and by close()."""

    def __init__(self, out: Sink) -> None:
        self._out = out
        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._discard = False
        self._thread = threading.Thread(target=self._run, name="archive-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is not None or self._discard:
                continue  # keep draining so the producer never blocks forever
            try:
                self._out.write(data)
            except BaseException as exc:  # handed to the producer
                self._error = exc

    def write(self, data: bytes) -> int:
        if self._error is not None:
            raise self._error
        piece = bytes(data)  # no copy when it is bytes already
        if len(piece) <= MAX_PIECE:
            self._queue.put(piece)
        else:
            view = memoryview(piece)  # slices share the bytes: no copy either
            for start in range(0, len(piece), MAX_PIECE):
                self._queue.put(view[start : start + MAX_PIECE])
        return len(piece)

    def close(self) -> None:
        """Wait until everything is written; raise what writing raised."""
        self._stop()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """After a failure: drop what is queued and end the thread."""
        self._discard = True
        self._stop()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
