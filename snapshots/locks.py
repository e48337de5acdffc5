"""One backup or restore per app at a time, across every worker and host.

The lock is a row in the shared database (works on PostgreSQL and on the
embedded SQLite), taken with an INSERT that the primary key makes exclusive.
Its holder refreshes heartbeat_at while it works; a lock with an old heartbeat
belonged to a worker that died and is taken over with a conditional UPDATE, so
two workers can never both take it over."""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from engine.errors import AppLocked
from snapshots.models import AppLock, Run


def acquire_app_lock(app_id: str, run: Run, wait_seconds: float = 0) -> None:
    """Take APP_ID's lock for RUN, waiting up to WAIT_SECONDS; else AppLocked."""
    deadline = time.monotonic() + wait_seconds
    while True:
        if _try_acquire(app_id, run):
            return
        if time.monotonic() >= deadline:
            raise AppLocked(_busy_message(app_id))
        time.sleep(1)


def _try_acquire(app_id: str, run: Run) -> bool:
    now = timezone.now()
    try:
        with transaction.atomic():
            AppLock.objects.create(app_id=app_id, run=run, acquired_at=now, heartbeat_at=now)
        return True
    except IntegrityError:
        pass
    stale_before = now - timedelta(seconds=settings.BACKUP_STALE_SECONDS)
    taken = AppLock.objects.filter(app_id=app_id, heartbeat_at__lt=stale_before).update(
        run=run, acquired_at=now, heartbeat_at=now
    )
    return taken == 1


def _busy_message(app_id: str) -> str:
    lock = AppLock.objects.filter(app_id=app_id).select_related("run").first()
    if lock is None:
        return f"app {app_id} is busy; try again"
    return (
        f"app {app_id} is busy: a {lock.run.operation} (run {lock.run_id}) has been "
        f"running since {lock.acquired_at:%Y-%m-%d %H:%M:%S} UTC; only one backup or "
        "restore per app runs at a time"
    )


def refresh_app_lock(app_id: str, run_id: object) -> None:
    AppLock.objects.filter(app_id=app_id, run_id=run_id).update(heartbeat_at=timezone.now())


def release_app_lock(app_id: str, run: Run) -> None:
    AppLock.objects.filter(app_id=app_id, run=run).delete()
