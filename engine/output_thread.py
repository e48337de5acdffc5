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

# Bytes in flight, not pieces: zstd hands out ~128 KiB pieces, ISA-L's gzip
# up to several MiB, and a count would let gzip queue ten times the memory.
MAX_QUEUED_BYTES = 16 * 1024 * 1024


class Sink(Protocol):
    def write(self, data: bytes) -> int: ...


class OutputThread:
    """write() queues, a thread writes to OUT in order. The first error OUT
    raises is raised again by the next write() and by close()."""

    def __init__(self, out: Sink) -> None:
        self._out = out
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._queued_bytes = 0
        self._room = threading.Condition()
        self._error: BaseException | None = None
        self._discard = False
        self._thread = threading.Thread(target=self._run, name="archive-output", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None and not self._discard:
                try:
                    self._out.write(data)
                except BaseException as exc:  # handed to the producer
                    self._error = exc
            with self._room:  # written or dropped: either way, room for more
                self._queued_bytes -= len(data)
                self._room.notify()

    def write(self, data: bytes) -> int:
        if self._error is not None:
            raise self._error
        piece = bytes(data)
        with self._room:
            # A piece larger than the budget still goes, alone.
            while self._queued_bytes and self._queued_bytes + len(piece) > MAX_QUEUED_BYTES:
                self._room.wait()
            self._queued_bytes += len(piece)
        self._queue.put(piece)
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
