"""Formatting for the console's pages: sizes and durations as the snapshot
admin shows them, ages as "3h ago"."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from snapshots.admin import human_duration, human_size

__all__ = ["human_age", "human_duration", "human_size"]


def human_age(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "—"
    seconds = max(((now or timezone.now()) - moment).total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"
