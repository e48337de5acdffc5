"""The drills' settings (environment variables of the same names, read in
backup_project.settings), with the same defaults for settings without them."""

from __future__ import annotations

from django.conf import settings


def time_limit_seconds() -> int:
    """The whole drill: verify, extraction, every restore and check."""
    return int(getattr(settings, "BACKUP_DRILL_TIME_LIMIT_SECONDS", 3600))


def disk_factor() -> float:
    """Free space a drill wants per byte of dumps: the extracted dumps in the
    spool, then the restored databases in Docker's data root (indexes and
    logs make a restored database bigger than its dump)."""
    return float(getattr(settings, "BACKUP_DRILL_DISK_FACTOR", 3.0))


def min_free_bytes() -> int:
    """Left free beside what the drill needs, so it never fills a disk."""
    return int(getattr(settings, "BACKUP_DRILL_MIN_FREE_BYTES", 512 << 20))
