"""The SHA-256 of every restored file, computed on a thread of its own while
the extracting thread writes, to be compared with manifest.json once the
stream has ended.

Files whose data lies in one read-ahead chunk (nearly all small files) are
handed over in batches: one queue operation per ~512 KiB instead of one per
file, which is what made handing small files over cost more than hashing
them in place (measured: see bench/README.md, Restore). Larger files go
piece by piece. hashlib releases the GIL on buffers over 2 KiB, so hashing
runs on the second core. Everything handed over is a view of a read-ahead
chunk, never a copy; the queue's depth bounds how many chunks are pinned.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Any

BATCH_BYTES = 512 << 10  # a batch is handed over once its files hold this much
BATCH_FILES = 512  # ... or this many files (empty and tiny ones)
QUEUE_DEPTH = 16  # batches or pieces in flight: each pins at most two 1 MiB chunks

_Batch = list[tuple[str, memoryview]]
_Piece = tuple[str, memoryview, bool]


class FileHashes:
    def __init__(self) -> None:
        # member name -> SHA-256, written by the thread. Raw, not hex: one per
        # restored file, held to the end (65 bytes each instead of 113).
        self.digests: dict[str, bytes] = {}
        self._queue: queue.Queue[_Batch | _Piece | None] = queue.Queue(QUEUE_DEPTH)
        self._batch: _Batch = []
        self._batch_bytes = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="restore-hasher", daemon=True)
        self._thread.start()

    def whole(self, name: str, data: memoryview) -> None:
        """All of NAME's data (a view that stays valid: a read-ahead chunk)."""
        self._batch.append((name, data))
        self._batch_bytes += len(data)
        if self._batch_bytes >= BATCH_BYTES or len(self._batch) >= BATCH_FILES:
            self._flush()

    def piece(self, name: str, data: memoryview, last: bool) -> None:
        """The next piece of NAME's data; LAST: its final one."""
        if self._batch:
            self._flush()  # keeps the pinned chunks in stream order, so bounded
        self._queue.put((name, data, last))

    def known(self, name: str, digest: bytes) -> None:
        """A digest computed elsewhere (backup.json, read whole)."""
        self.digests[name] = digest

    def _flush(self) -> None:
        self._queue.put(self._batch)
        self._batch, self._batch_bytes = [], 0

    def _run(self) -> None:
        digests, sha256 = self.digests, hashlib.sha256
        running: dict[str, Any] = {}
        while (item := self._queue.get()) is not None:
            try:
                if type(item) is list:
                    for name, data in item:
                        digests[name] = sha256(data).digest()
                    continue
                name, data, last = item  # type: ignore[misc]
                digest = running.pop(name, None) or sha256()
                digest.update(data)
                if last:
                    digests[name] = digest.digest()
                else:
                    running[name] = digest
            except BaseException as exc:  # reported by finish(); keep draining
                self._error = exc

    def finish(self) -> dict[str, bytes]:
        """Every digest, once the thread has hashed all it was handed."""
        if self._batch:
            self._flush()
        self.close()
        if self._error is not None:
            raise self._error
        return self.digests

    def close(self) -> None:
        """Stop the thread (what is queued is hashed first); safe to repeat."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
