"""Deleting the data a restore replaced, once the app is up: off the
critical path. At commit the old data was already renamed aside to
`_data.trash-<token>` (volume_swap: the decision, durable), so deleting it
changes nothing the app sees and may happen whenever: here on a thread of
its own (data work only: it logs, it reports to no run), and whatever a
crash or a stopped process leaves, by the next cleanup (sweep_trash, run
by `backup cleanup` and the worker's recovery at start and on its timer).

Deleting one tree twice at once (this thread and a sweep) is harmless:
whichever comes second finds entries gone and goes on."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.errors import brief
from engine.restore.volume_swap import TRASH_PREFIX

logger = logging.getLogger(__name__)

_threads: list[threading.Thread] = []
_lock = threading.Lock()


def drop_in_background(volume_dirs: Iterable[Path]) -> threading.Thread | None:
    """Start deleting every `_data.trash-*` in VOLUME_DIRS; the thread is not
    a daemon, so a command's process finishes the deleting before it exits
    (a worker's pool may not wait: the next cleanup finishes then)."""
    dirs = list(dict.fromkeys(volume_dirs))
    if not dirs:
        return None
    thread = threading.Thread(target=_drop, args=(dirs,), name="restore-drop-old-data")
    with _lock:
        _threads[:] = [t for t in _threads if t.is_alive()]
        _threads.append(thread)
    thread.start()
    return thread


def wait_for_drops(timeout: float | None = None) -> bool:
    """Wait for the drops started in this process; True if all ended."""
    with _lock:
        threads = list(_threads)
    for thread in threads:
        thread.join(timeout)
    return not any(thread.is_alive() for thread in threads)


def _drop(volume_dirs: list[Path]) -> None:
    for volume_dir in volume_dirs:
        for trash in trash_in(volume_dir):
            try:
                remove_tree(trash)
            except Exception as exc:  # logged; left for the next cleanup
                logger.warning("old data %s not deleted yet (%s): the next cleanup does", trash,
                               brief(exc))  # fmt: skip


def trash_in(volume_dir: Path) -> list[Path]:
    """The `_data.trash-*` dirs of VOLUME_DIR (old data given up by a restore)."""
    try:
        return sorted(volume_dir / n for n in os.listdir(volume_dir) if n.startswith(TRASH_PREFIX))
    except OSError:  # the volume is gone: nothing left to delete
        return []


def remove_tree(path: Path) -> None:
    """Delete PATH (symlinks inside unlinked, never followed: rmtree works
    with directory fds), tolerating entries deleted meanwhile by another
    deleter of the same tree; any other failure is raised at the end."""

    def gone_already(_func: Any, _path: str, exc_info: Any) -> None:
        if not isinstance(exc_info[1], FileNotFoundError):
            raise exc_info[1]

    if os.path.islink(path) or not os.path.isdir(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    shutil.rmtree(path, onerror=gone_already)


def sweep_trash(volume_dirs: Iterable[Path]) -> list[str]:
    """Delete the old data left in VOLUME_DIRS by drops that did not finish
    (a crash, a process stopped); the paths deleted. One that cannot be
    deleted is logged and tried again on the next sweep."""
    swept: list[str] = []
    for volume_dir in volume_dirs:
        for trash in trash_in(volume_dir):
            try:
                remove_tree(trash)
                swept.append(str(trash))
            except Exception as exc:
                logger.warning("old data %s not deleted: %s", trash, brief(exc))
    return swept
