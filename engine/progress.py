"""Progress reporting: the engine calls a callback, so the same code serves a
Celery task (updates the run row and task state), a management command (a
progress bar) and a benchmark (nothing)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    phase: str  # e.g. "locking", "dumping", "archiving", "verifying"
    bytes_done: int = 0
    bytes_total: int | None = None  # None when unknown
    detail: str = ""


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """The default callback: report nothing."""
