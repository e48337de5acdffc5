"""Run backups at low CPU and I/O priority so the apps keep their speed.

CPU: nice. I/O: the ioprio_set syscall (what `ionice` calls); with the BFQ or
CFQ scheduler the idle/best-effort classes take effect, elsewhere it is a
harmless no-op. Both apply to the calling thread and what it starts."""

from __future__ import annotations

import ctypes
import logging
import os
import platform

logger = logging.getLogger(__name__)

IOPRIO_CLASSES = {"realtime": 1, "best-effort": 2, "idle": 3}
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_SHIFT = 13
_SYSCALL_IOPRIO_SET = {"x86_64": 251, "aarch64": 30}


def lower_priority(nice: int, io_class: str = "best-effort", io_level: int = 7) -> None:
    """Raise our niceness to at least NICE and set the I/O class/level.
    Never raises: a backup at normal priority beats no backup."""
    if nice > 0:
        current = os.nice(0)
        if current < nice:
            os.nice(nice - current)
    number = _SYSCALL_IOPRIO_SET.get(platform.machine())
    if number is None or io_class not in IOPRIO_CLASSES:
        return
    value = (IOPRIO_CLASSES[io_class] << _IOPRIO_CLASS_SHIFT) | (io_level & 7)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, _IOPRIO_WHO_PROCESS, 0, value) != 0:
        logger.warning("ioprio_set failed: %s", os.strerror(ctypes.get_errno()))


def io_priority() -> tuple[int, int]:
    """(class, level) of the calling thread, for tests and diagnostics."""
    number = {"x86_64": 252, "aarch64": 31}.get(platform.machine())
    if number is None:
        return (0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    value = libc.syscall(number, _IOPRIO_WHO_PROCESS, 0)
    return (value >> _IOPRIO_CLASS_SHIFT, value & 7)
