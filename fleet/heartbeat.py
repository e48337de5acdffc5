"""Each worker's own heartbeat and inventory timers.

Threads in the worker's main process, not beat entries: a message for the
host's queue would wait behind a long backup (prefetch 1), and the host
would look dead exactly while it works. The threads live and die with the
worker process, so `kill -9` of the worker stops the heartbeat, which is
what marks the host offline.

Two threads, so that a slow inventory (an engine under load, volume sizes
being measured) never delays a heartbeat: a host must not look offline, and
get its new work refused, because its inventory takes long. Nothing of
this runs in worker_ready's handler beyond registering the row: that
handler runs before the worker's event loop, and the worker consumes no
task and answers no ping until it returns."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings
from django.db import close_old_connections, connection

from engine.priority import lower_priority
from fleet.services import heartbeat, refresh_inventory, register_host
from fleet.volume_sizes import measure_due_sizes

logger = logging.getLogger(__name__)

_stop = threading.Event()


def _queues(consumer: Any) -> list[str]:
    try:
        return [queue.name for queue in consumer.task_consumer.queues]
    except AttributeError:  # no task consumer (yet): the app's configured queues
        return list(consumer.app.amqp.queues.keys())


def _forever(name: str, every: float, step: Callable[[], None], at_start: bool) -> None:
    """STEP now (AT_START) and every EVERY seconds until the worker shuts
    down. A failure is logged and retried next time: the thread must not die."""
    try:
        if at_start and not _stop.is_set():
            _once(name, every, step)
        while not _stop.wait(every):
            _once(name, every, step)
    finally:
        connection.close()


def _once(name: str, every: float, step: Callable[[], None]) -> None:
    try:
        close_old_connections()
        step()
    except Exception:
        logger.exception("host %s failed; retrying in %s s", name, every)


def _inventory() -> None:
    refresh_inventory()
    # The sizes that are due, after the inventory is stored (the apps are
    # listed at once; their sizes follow), stopping when the worker stops.
    if settings.BACKUP_VOLUME_SIZE_INTERVAL_SECONDS:
        measure_due_sizes(stop=_stop.is_set)


def _inventory_thread() -> None:
    # The walks of volume sizes read every file: at the backups' priority.
    if settings.BACKUP_IO_CLASS != "none":
        lower_priority(settings.BACKUP_NICE, settings.BACKUP_IO_CLASS)
    _forever("inventory", settings.BACKUP_INVENTORY_INTERVAL_SECONDS, _inventory, at_start=True)


@worker_ready.connect
def _start_on_worker_ready(sender: Any = None, **_: Any) -> None:
    """Register the host (one quick write) and start the timers; the first
    inventory is taken by its thread. Errors are logged: the worker must
    start all the same."""
    try:
        register_host(_queues(sender))
    except Exception:
        logger.exception("host registration failed; the heartbeat retries")
    finally:
        connection.close()  # this thread's connection: the timers have their own
    _stop.clear()
    beat = settings.BACKUP_HEARTBEAT_SECONDS
    threading.Thread(
        target=_forever, args=("heartbeat", beat, heartbeat, False), name="host-heartbeat",
        daemon=True,
    ).start()  # fmt: skip
    threading.Thread(target=_inventory_thread, name="host-inventory", daemon=True).start()


@worker_shutting_down.connect
def _stop_on_shutdown(**_: Any) -> None:
    _stop.set()
