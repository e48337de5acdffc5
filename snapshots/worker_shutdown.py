"""A worker told to stop ends its running operations the way a failure does.

`docker stop` (and `docker compose down`, systemd) sends SIGTERM to the
worker's main process. Celery's answer is a warm shutdown: it stops taking
tasks and waits for the running ones, while a prefork pool's child keeps
working until the engine's SIGKILL at the end of the stop grace period. A
backup would leave its containers paused or stopped, a restore would be cut
in the middle of its swap, and the run would be "running" until a recovery.

So the main process, when it starts shutting down (worker_shutting_down),
sends SIGTERM to each pool process that runs a backup, restore or
verification, and there the operation task has replaced billiard's SIGTERM
handler (a SystemExit, and os._exit on a second signal) with ours, which
raises Terminated in the task: containers are brought back, a restore is
rolled back, the run is marked failed ("stopped by SIGTERM"), and the task
returns like any failed one. The worker then finishes its warm shutdown. The
worker's stop grace period must leave time for that (docker-compose.yml).

A solo pool runs the task in the main process itself, under Celery's own
SIGTERM handler: the hook then raises Terminated there, in the task.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from billiard.process import current_process
from celery.signals import worker_shutting_down
from celery.worker import state

from engine import termination

logger = logging.getLogger(__name__)

# The tasks that run under operation(); their names are stable (tasks.py).
OPERATION_TASKS = frozenset(
    {"snapshots.create_backup", "snapshots.restore_backup", "snapshots.verify_snapshot"}
)


def _in_pool_child() -> bool:
    return current_process().name != "MainProcess"


@contextmanager
def operation() -> Iterator[None]:
    """Around an operation task's work: SIGTERM to this process ends it
    (Terminated, raised in the task)."""
    if _in_pool_child():
        with termination.stop_on(signal.SIGTERM):
            yield
    else:  # solo pool: Celery's handler stays, and the hook below ends the operation
        with termination.stop_on():
            yield


@worker_shutting_down.connect
def _end_running_operations(sig: str = "", how: str = "", **_: Any) -> None:
    """Runs in the main process, inside Celery's signal handler."""
    me = os.getpid()
    for request in list(state.active_requests):
        pid = request.worker_pid
        if request.name in OPERATION_TASKS and pid and pid != me:
            logger.warning(
                "%s shutdown (%s): ending %s[%s] in pool process %s",
                how, sig, request.name, request.id, pid,
            )  # fmt: skip
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(pid, signal.SIGTERM)
    if termination.active():  # an operation runs in this very process (solo pool)
        termination.terminate(signal.SIGTERM)
