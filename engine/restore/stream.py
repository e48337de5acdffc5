"""The SHA-256 of restored member data, computed as it is read (Hasher), to
be compared with manifest.json once the stream has ended. The stream itself
is read by engine.archive.read_ahead.Source."""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import Any

LARGE_FILE = 1 << 20  # files this large are hashed on the hasher thread


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
