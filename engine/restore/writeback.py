"""Writing the staged data to disk while the app still runs.

Linux keeps freshly written data in the page cache and writes it back late
(dirty_background_ratio: here gigabytes, or after 30 s). A staging pass of a
few GB therefore ends with all of it still dirty, and the first thing that
syncs the filesystem pays for it: `docker stop` does (unmounting the
container's root filesystem syncs it), so the write-back of the whole
restore landed in the downtime (stop 0.7-1.1 s for a container that stops in
0.1 s on a clean cache; bench/README, "Write-back before the stop").

So the filesystems the staging dirs are on are synced (syncfs: that
filesystem only, not every disk of the host) every FLUSH_EVERY_SECONDS on a
helper thread while the archive is extracted, and once more, waited for, at
the end of the staging pass. It also makes the restored data durable before
a swap makes it live and the old data is dropped: a power cut after the swap
cannot leave empty files in place of the app's data.

A failing syncfs is logged and otherwise ignored: it only moves the
write-back, the kernel still writes the data."""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from engine.errors import brief

logger = logging.getLogger(__name__)

FLUSH_EVERY_SECONDS = 0.5
_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(fd: int) -> None:
    """syncfs(2) of the filesystem FD is on; ctypes releases the GIL meanwhile."""
    if _libc.syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class Writeback:
    """While the block runs, syncs every FLUSH_EVERY_SECONDS the filesystems
    of PATHS (existing directories; one per filesystem is enough) on its own
    thread; `finish()` syncs them once more and returns when that is done."""

    def __init__(self, paths: Iterable[Path], every: float = FLUSH_EVERY_SECONDS) -> None:
        self._every = every
        self._fds: list[int] = []
        devices: set[int] = set()
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                logger.warning("cannot open %s to write it back: %s", path, brief(exc))
                continue
            device = os.fstat(fd).st_dev
            if device in devices:  # one sync per filesystem is enough
                os.close(fd)
                continue
            devices.add(device)
            self._fds.append(fd)
        self._stop = threading.Event()
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="restore-writeback", daemon=True)

    def __enter__(self) -> Writeback:
        if self._fds:
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_rounds()
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def finish(self) -> None:
        """The last sync, waited for: the staged data is on disk."""
        self._stop_rounds()
        self._sync_all()

    def _stop_rounds(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sync_all()

    def _sync_all(self) -> None:
        for fd in self._fds:
            try:
                syncfs(fd)
            except OSError as exc:
                if not self._failed:  # once: the next ones would say the same
                    self._failed = True
                    logger.warning("syncfs of the staging filesystem failed: %s", brief(exc))
