"""SHA-256 of large members on a thread of its own, for deep verification.

The thread that parses the tar also hashes small files in place (handing them
over would cost more than hashing them), and passes the data of large files
here as views of the read-ahead chunks, never copied. hashlib releases the
GIL on buffers over 2 KiB, so this runs on the second core beside the parser,
the decompressor and the stored file's own hash. Digests complete in the
order members were handed over.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Any

QUEUE_DEPTH = 8  # views in flight: each pins one read-ahead chunk


class PendingDigest:
    """A member's SHA-256 as it is being computed; `hexdigest` is None until
    the thread has hashed the member's last byte."""

    __slots__ = ("_hash", "hexdigest")

    def __init__(self) -> None:
        self._hash: Any = hashlib.sha256()
        self.hexdigest: str | None = None


class HashThread:
    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[PendingDigest, memoryview | None] | None] = queue.Queue(
            QUEUE_DEPTH
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="verify-hasher", daemon=True)
        self._thread.start()

    def update(self, digest: PendingDigest, data: memoryview) -> None:
        self._queue.put((digest, data))

    def finish(self, digest: PendingDigest) -> None:
        """The member's data is complete: its hexdigest will be set."""
        self._queue.put((digest, None))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            digest, data = item
            try:
                if data is None:
                    digest.hexdigest = digest._hash.hexdigest()
                    digest._hash = None  # its state is no longer needed
                else:
                    digest._hash.update(data)
            except BaseException as exc:  # reported by close(); keep draining
                self._error = exc

    def close(self) -> None:
        """Wait for every digest handed over; raises what the thread hit."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error
