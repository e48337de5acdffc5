"""The archive writer's second stage: a thread that hashes file data and
feeds the output, so the walk and the reads of the caller's thread run on
another core (split out of engine.archive.writer)."""

from __future__ import annotations

import queue
import threading
from typing import Any, Protocol

CHUNK_SIZE = 4 * 1024 * 1024  # one read of a large file, one write to the compressor


class Writable(Protocol):
    def write(self, data: bytes) -> int: ...


_Item = tuple[Any, list[tuple[Any, int, int]], memoryview | None]


class WriterThread:
    """The second stage: hashes file data and feeds the output (compressor →
    encryptor → storage) in its own thread, while the caller's thread walks
    and reads. hashlib, os.preadv and zstd release the GIL, so the two run on
    two cores. Large-file chunks come from a small pool of reused buffers."""

    def __init__(self, out: Writable, buffers: int = 6) -> None:
        self._out = out
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=buffers + 4)
        self._free: queue.Queue[memoryview] = queue.Queue()
        for _ in range(buffers):
            self._free.put(memoryview(bytearray(CHUNK_SIZE)))
        self._error: BaseException | None = None
        self._discard = False
        # Items handed over and items finished: an entry's digest is final
        # once the item holding its last bytes is finished (see EntryLog).
        self.submitted = 0
        self.completed = 0
        self._thread = threading.Thread(target=self._run, name="archive-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            data, hashes, recycle = item
            if self._error is None and not self._discard:
                try:
                    view = memoryview(data)
                    for hasher, start, end in hashes:
                        hasher.update(view[start:end])
                    self._out.write(data)
                except BaseException as exc:
                    self._error = exc
            if recycle is not None:
                self._free.put(recycle)
            self.completed += 1
            self._queue.task_done()
        self._queue.task_done()  # the None that stopped us: drain() never waits on it

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, data: Any, hashes: list[Any], recycle: memoryview | None = None) -> None:
        self.check()
        self.submitted += 1
        self._queue.put((data, hashes, recycle))

    def buffer(self) -> memoryview:
        return self._free.get()

    def recycle(self, buffer: memoryview) -> None:
        self._free.put(buffer)

    def drain(self) -> None:
        """Wait until everything queued is written (or discarded)."""
        self._queue.join()
        self.check()

    def stop(self, discard: bool = False) -> None:
        self._discard = self._discard or discard
        self._queue.put(None)
        self._thread.join()
