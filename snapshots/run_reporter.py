"""The one owner of a run's progress: a ProgressRelay whose thread writes the
run row (phase, bytes, heartbeat), keeps the app lock's heartbeat fresh on a
timer of its own, and forwards each report to the caller's callback (Celery
task state, a terminal progress bar).

Only this thread and the run's own thread touch the database; the engine's
helper threads (exec feeders, hashers, read-ahead) only hand reports over.
The relay's thread closes its database connection when it ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connections
from django.utils import timezone

from engine.progress import Progress, ProgressCallback, ProgressRelay
from snapshots.locks import refresh_app_lock
from snapshots.models import Run

PROGRESS_WRITE_INTERVAL = 1.0  # seconds between two progress writes to the database


def _heartbeat_seconds() -> float:
    """Well inside the stale limit: three beats may be lost before a live run
    looks dead."""
    return max(1.0, settings.BACKUP_STALE_SECONDS / 4)


class _RunRowSink:
    """Writes a report onto the run row; uses only ids, never the caller's
    Run object (that belongs to the run's own thread)."""

    def __init__(self, run: Run) -> None:
        self._run_id = run.pk
        self._app_id = run.app_id

    def __call__(self, progress: Progress) -> None:
        Run.objects.filter(pk=self._run_id).update(
            phase=progress.phase, bytes_done=progress.bytes_done,
            bytes_total=progress.bytes_total, heartbeat_at=timezone.now(),
        )  # fmt: skip

    def heartbeat(self) -> None:
        Run.objects.filter(pk=self._run_id).update(heartbeat_at=timezone.now())
        refresh_app_lock(self._app_id, self._run_id)


def _close_thread_connections() -> None:
    # Connections are per thread: this closes the relay thread's own only.
    connections.close_all()


@contextmanager
def run_reporter(run: Run, forward: ProgressCallback | None = None) -> Iterator[ProgressCallback]:
    """A progress callback for the engine, safe to call from any thread. Leave
    the block before writing the run's final state: the relay's last
    publication happens when the block ends."""
    sink = _RunRowSink(run)
    relay = ProgressRelay(
        [sink, forward] if forward is not None else [sink],
        interval=PROGRESS_WRITE_INTERVAL,
        ticks=[sink.heartbeat],
        tick_seconds=_heartbeat_seconds(),
        on_exit=_close_thread_connections,
        name=f"progress-{run.operation}-{str(run.pk)[:8]}",
    )
    with relay:
        yield relay.report
