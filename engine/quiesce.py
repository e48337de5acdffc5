"""Consistency modes for reading volumes: live (default), paused, stopped.

Pausing or stopping the app's containers while its volumes are read gives a
crash-consistent copy of files a live app keeps changing. They are resumed or
restarted right after the volumes are read, before any upload, whatever
happens in between (the `finally`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import docker
import docker.errors

from engine import steps
from engine.inventory import AppInfo
from engine.steps import StepGuard, no_guard

ConsistencyMode = Literal["live", "pause", "stop"]
CONSISTENCY_MODES: tuple[str, ...] = ("live", "pause", "stop")
STOP_TIMEOUT_SECONDS = 30

logger = logging.getLogger(__name__)


@contextmanager
def quiesced(
    client: docker.DockerClient,
    app: AppInfo,
    mode: ConsistencyMode,
    guard: StepGuard = no_guard,
) -> Iterator[None]:
    """GUARD is told before the containers are paused or stopped (it may
    refuse: the lease is lost). Bringing them back is not guarded: undoing
    our own pause or stop is always right, whoever holds the lease now."""
    if mode not in CONSISTENCY_MODES:
        raise ValueError(f"unknown consistency mode {mode!r} (live, pause or stop)")
    running = [c for c in app.containers if c.state == "running" and not c.one_off]
    if mode == "live" or not running:
        yield
        return
    touched = []
    guard(steps.PAUSE if mode == "pause" else steps.STOP, {"containers": [c.id for c in running]})
    try:
        for info in running:
            container = client.containers.get(info.id)
            if mode == "pause":
                container.pause()
            else:
                container.stop(timeout=STOP_TIMEOUT_SECONDS)
            touched.append(container)
        yield
    finally:
        # Bring back in reverse order: databases (usually listed first) last
        # stopped, first started would be nicer, but reverse undo is the safe rule.
        for container in reversed(touched):
            try:
                if mode == "pause":
                    container.unpause()
                else:
                    container.start()
            except docker.errors.APIError as exc:
                logger.error("could not bring %s back after the backup: %s", container.name, exc)
