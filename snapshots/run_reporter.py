"""The one owner of a run's progress: a ProgressRelay whose thread writes the
run row (phase, bytes, heartbeat), renews the run's heartbeat and its app
lease on a timer of its own (a silent phase, one huge file or a long index
build, must not look like a dead worker), and forwards each report to the
caller's callback (Celery task state, a terminal progress bar).

Only this thread and the run's own thread touch the database; the engine's
helper threads (exec feeders, hashers, read-ahead) only hand reports over.
The relay's thread closes its database connection when it ends."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections
from django.db.models.functions import Now

from engine.progress import Progress, ProgressCallback, ProgressRelay
from snapshots.locks import Lease, renew_every_seconds
from snapshots.models import Run

logger = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL = 0.5  # seconds between two progress writes to the database


class _RunRowSink:
    """Writes a report onto the run row; uses only ids, never the caller's
    Run object (that belongs to the run's own thread)."""

    def __init__(self, run: Run, lease: Lease | None) -> None:
        self._run_id = run.pk
        self._lease = lease
        self._lost = False

    def __call__(self, progress: Progress) -> None:
        fields: dict[str, object] = {"phase": progress.phase, "heartbeat_at": Now()}
        # A phase without figures ("stopping", "starting" after a restore's
        # extraction) keeps the last ones: the row must not end on "0 bytes".
        if progress.bytes_done or progress.bytes_total is not None:
            fields |= {"bytes_done": progress.bytes_done, "bytes_total": progress.bytes_total}
        Run.objects.filter(pk=self._run_id).update(**fields)

    def heartbeat(self) -> None:
        """The run's heartbeat and its lease, by the database's clock. A lost
        lease is not this thread's to act on: the run's own thread finds out
        at its next step's check and stops there."""
        Run.objects.filter(pk=self._run_id).update(heartbeat_at=Now())
        if self._lease is not None and not self._lost and not self._lease.renew():
            self._lost = True
            logger.warning("run %s lost the lease of app %s", self._run_id, self._lease.app_id)


def _close_thread_connections() -> None:
    # Connections are per thread: this closes the relay thread's own only.
    connections.close_all()


@contextmanager
def run_reporter(
    run: Run, forward: ProgressCallback | None = None, lease: Lease | None = None
) -> Iterator[ProgressCallback]:
    """A progress callback for the engine, safe to call from any thread, and
    heartbeats of RUN (and renewals of LEASE) while the block runs. Leave
    the block before writing the run's final state: the relay's last
    publication happens when the block ends."""
    sink = _RunRowSink(run, lease)
    relay = ProgressRelay(
        [sink, forward] if forward is not None else [sink],
        interval=PROGRESS_WRITE_INTERVAL,
        ticks=[sink.heartbeat],
        tick_seconds=renew_every_seconds(),
        on_exit=_close_thread_connections,
        name=f"progress-{run.operation}-{str(run.pk)[:8]}",
    )
    with relay:
        yield relay.report
