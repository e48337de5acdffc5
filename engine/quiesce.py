"""Consistency modes for reading volumes: live (default), paused, stopped.

Pausing or stopping the app's containers while its volumes are read gives a
crash-consistent copy of files a live app keeps changing. They are resumed or
restarted right after the volumes are read, before any upload, whatever
happens in between, and neither a failure of one of them (the engine
unreachable or slow: a requests ConnectionError or ReadTimeout, not an
APIError) nor a signal stops the others from being brought back. A container
that could not be brought back is named in the backup's error: after a
failed backup as a note on its exception, after reading the volumes went
well as ResumeFailed (the backup fails: it did not leave the app as it was).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import docker
import docker.errors
from docker.models.containers import Container

from engine import steps
from engine.errors import EngineError, describe
from engine.inventory import AppInfo
from engine.restore import lifecycle
from engine.steps import StepGuard, no_guard
from engine.termination import deferred

ConsistencyMode = Literal["live", "pause", "stop"]
CONSISTENCY_MODES: tuple[str, ...] = ("live", "pause", "stop")
# The engine's fixed stop timeout where a container's own is not used yet
# (recovery, and the rollback's stop of what the restore started).
STOP_TIMEOUT_SECONDS = 30

logger = logging.getLogger(__name__)


class ResumeFailed(EngineError):
    """The volumes were read, but containers could not be brought back."""

    def __init__(self, message: str, not_resumed: list[str]) -> None:
        super().__init__(message)
        self.not_resumed = not_resumed


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
    touched: list[Container] = []
    guard(steps.PAUSE if mode == "pause" else steps.STOP, {"containers": [c.id for c in running]})
    try:
        with deferred():  # a signal now would leave a paused container unrecorded
            if mode == "pause":
                for info in running:
                    container = client.containers.get(info.id)
                    # Recorded before the call: a pause that timed out may still have happened.
                    touched.append(container)
                    container.pause()
            else:
                containers = [client.containers.get(info.id) for info in running]
                touched.extend(containers)  # before the calls, as for a pause
                # Dependents first, each rank at once, each with its own timeout.
                databases = [db.container.id for db in app.databases]
                lifecycle.stop_in_order(containers, databases=databases)
        yield
    except BaseException as exc:
        with deferred():
            left = _bring_back(touched, mode)
            if left:
                exc.add_note(_left_message(left, mode))
                # Read by the service: the run is not over while these are down.
                exc.not_resumed = [name for name, _ in left]  # type: ignore[attr-defined]
            raise
    with deferred():
        left = _bring_back(touched, mode)
        if left:
            message = f"the volumes were read, but {_left_message(left, mode)}"
            raise ResumeFailed(message, [name for name, _ in left])


def _bring_back(touched: list[Container], mode: ConsistencyMode) -> list[tuple[str, str]]:
    """Resume every container of TOUCHED in reverse order, or restart them
    databases first (each rank at once), each whatever happened to the
    others; returns (name, why) of those left."""
    failures: list[tuple[Container, BaseException]] = []
    if mode == "stop":
        results = lifecycle.start_in_order(touched)
        failures = [(r.container, r.error) for r in results if r.error is not None]
    else:
        for container in reversed(touched):
            try:
                container.unpause()
            except Exception as exc:  # APIError, or the engine unreachable or slow
                failures.append((container, exc))
    left: list[tuple[str, str]] = []
    for container, exc in failures:
        if _is_back(container, mode):  # the pause or stop never happened
            continue
        why = describe(exc)
        logger.error("could not bring %s back after the backup: %s", container.name, why)
        left.append((container.name, why))
    return left


def _is_back(container: Container, mode: ConsistencyMode) -> bool:
    try:
        container.reload()
    except Exception:
        return False
    # Not paused is not our doing any more (a container that exited by itself).
    return container.status != "paused" if mode == "pause" else container.status == "running"


def _left_message(left: list[tuple[str, str]], mode: ConsistencyMode) -> str:
    state, command = ("paused", "unpause") if mode == "pause" else ("stopped", "start")
    names = " ".join(name for name, _ in left)
    reasons = ", ".join(f"{name} ({why})" for name, why in left)
    return f"could not bring back {reasons}: left {state}; run `docker {command} {names}`"
