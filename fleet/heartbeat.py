"""Each worker's own heartbeat and inventory timer.

A thread in the worker's main process, not a beat entry: a message for the
host's queue would wait behind a long backup (prefetch 1), and the host
would look dead exactly while it works. The thread lives and dies with the
worker process, so `kill -9` of the worker stops the heartbeat, which is
what marks the host offline."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings
from django.db import close_old_connections, connection

from fleet.services import heartbeat, refresh_inventory, register_host

logger = logging.getLogger(__name__)

_stop = threading.Event()


def _queues(consumer: Any) -> list[str]:
    try:
        return [queue.name for queue in consumer.task_consumer.queues]
    except AttributeError:  # no task consumer (yet): the app's configured queues
        return list(consumer.app.amqp.queues.keys())


def _beat_loop() -> None:
    """Heartbeat every BACKUP_HEARTBEAT_SECONDS, inventory every
    BACKUP_INVENTORY_INTERVAL_SECONDS, until the worker shuts down. A
    failure is logged and retried on the next beat: this thread must not die."""
    beat = settings.BACKUP_HEARTBEAT_SECONDS
    every = max(1, round(settings.BACKUP_INVENTORY_INTERVAL_SECONDS / beat))
    tick = 0
    try:
        while not _stop.wait(beat):
            tick += 1
            try:
                close_old_connections()
                if tick % every == 0:
                    refresh_inventory()  # also a heartbeat
                else:
                    heartbeat()
            except Exception:
                logger.exception("host heartbeat/inventory failed; retrying in %s s", beat)
    finally:
        connection.close()


@worker_ready.connect
def _start_on_worker_ready(sender: Any = None, **_: Any) -> None:
    """Register the host, report its inventory now, and start the timer.
    Errors are logged: the worker must start all the same."""
    try:
        register_host(_queues(sender))
        refresh_inventory()
    except Exception:
        logger.exception("host registration or first inventory failed; the timer retries")
    finally:
        connection.close()  # this thread's connection: the timer has its own
    _stop.clear()
    threading.Thread(target=_beat_loop, name="host-heartbeat", daemon=True).start()


@worker_shutting_down.connect
def _stop_on_shutdown(**_: Any) -> None:
    _stop.set()
