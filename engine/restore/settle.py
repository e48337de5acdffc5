"""After a restore: roll back what it changed (it failed), or keep what it
restored (it succeeded). Rolling back tries every step whatever happened to
the others (the engine unreachable is one step's failure, not the end of
the rollback) and says what could not be put back; keeping makes the
decision for every volume first and leaves deleting the old data, renamed
aside, to a thread of its own (engine.restore.drop), off the critical path."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from engine.dumps.mysql_shadow import SwapRecord, swap_back
from engine.errors import brief
from engine.inventory import DatabaseInfo
from engine.quiesce import STOP_TIMEOUT_SECONDS
from engine.restore import lifecycle
from engine.restore.drop import drop_in_background
from engine.restore.volume_swap import TRASH_PREFIX, SwapHandle, discard_stage
from engine.termination import deferred, take_held

logger = logging.getLogger(__name__)


# Not rolled back by choice (no safety backup was asked for): nothing to retry.
NO_DATABASE_ROLLBACK = "databases: no safety backup to roll them back from"


@dataclass
class Changes:
    """What the restore changed so far: everything a rollback must undo."""

    stages: dict[str, Path] = field(default_factory=dict)  # staging dirs not swapped in
    swaps: dict[str, SwapHandle] = field(default_factory=dict)
    databases: bool = False  # a dump was loaded into a live database
    # Databases whose tables were swapped in from a shadow database.
    database_swaps: list[tuple[DatabaseInfo, SwapRecord]] = field(default_factory=list)


# Restores the databases from the safety backup: given by the service, which
# knows where that backup is stored. None when no safety backup was taken.
DatabaseRollback = Callable[[], list[str]]


def roll_back(
    client: docker.DockerClient,
    changes: Changes,
    database_rollback: DatabaseRollback | None,
    was_running: list[Any],
    stopped_before: list[Any],
    kept_running: list[Any] | None = None,
) -> tuple[list[str], list[str]]:
    """Put things back as they were. Every step is tried whatever happened
    to the others: any exception (an APIError, the engine unreachable or
    slow, a filesystem error) is that step's failure. Returns what was put
    back and what could not be, with why. KEPT_RUNNING: database containers
    the restore loaded without stopping them: not stopped here either (the
    database rollback loads into them running), started again should one
    have gone down meanwhile."""
    done: list[str] = []
    failed: list[str] = []

    def failure(what: str, exc: Exception) -> None:
        logger.error("rollback: %s: %s", what, brief(exc))
        failed.append(f"{what}: {brief(exc)}")

    for info in was_running:
        try:
            stop_container(client.containers.get(info.id))
        except docker.errors.NotFound:
            pass  # removed meanwhile: nothing of it runs on the volumes
        except Exception as exc:  # keep going: every other step must still be tried
            failure(f"stop {info.name}", exc)
    for name, stage in changes.stages.items():  # extracted into, never swapped in
        try:
            discard_stage(stage)
        except Exception as exc:
            failure(f"remove the staging dir {stage} of volume {name}", exc)
    for name, handle in changes.swaps.items():
        try:
            handle.rollback()
        except Exception as exc:
            if handle.state != "rolled_back":
                kept = f" (its previous data is at {handle.old})" if handle.old.exists() else ""
                failure(f"volume {name}{kept}", exc)
                continue
            # The old data is back; only deleting the restored data failed.
            failure(f"remove the restored data {handle.staged} of volume {name}", exc)
        done.append(f"volume {name}")
    for db, record in list(reversed(changes.database_swaps)):
        try:
            swap_back(client, db, record)
            # Left in the list: the swaps whose aside database is the app's data.
            changes.database_swaps.remove((db, record))
            done.append(f"database {record.names.database}")
        except Exception as exc:
            where = f"{record.names.aside} in {db.container.name}"
            failure(f"database {record.names.database} (its previous tables are in {where})", exc)
    if changes.databases:
        if database_rollback is None:
            failed.append(NO_DATABASE_ROLLBACK)
        else:
            try:
                done += [f"database {name}" for name in database_rollback()]
            except Exception as exc:
                failure("databases (from the safety backup)", exc)
    # A container stopped before the restore and running now was started by
    # it (a database container, to load its dump; the database rollback
    # above needed it too): it goes back to stopped.
    for info in stopped_before:
        try:
            container = client.containers.get(info.id)
            if container.status == "running":
                container.stop(timeout=STOP_TIMEOUT_SECONDS)
                done.append(f"stopped {info.name}")
        except docker.errors.NotFound:
            pass
        except Exception as exc:
            failure(f"stop {info.name} again", exc)
    found: list[tuple[Any, Container]] = []
    for info in was_running:
        try:
            found.append((info, client.containers.get(info.id)))
        except Exception as exc:
            failure(f"start {info.name}", exc)
    for info in kept_running or []:
        try:
            container = client.containers.get(info.id)
            if container.status != "running":  # it went down during the restore
                found.append((info, container))
        except Exception as exc:
            failure(f"start {info.name}", exc)
    # Databases first, each rank at once; every one tried whatever the others did.
    started = lifecycle.start_in_order([container for _, container in found])
    for (info, container), result in zip(found, started, strict=True):
        try:
            if result.error is not None:
                raise result.error
            done.append(f"started {info.name}")
            if info.state == "paused":  # as it was before the restore
                container.pause()
                done.append(f"paused {info.name} again")
        except Exception as exc:
            failure(f"start {info.name}", exc)
    return done, failed


def stop_container(container: Container) -> None:
    """Stop CONTAINER, a paused one included, with its own stop timeout."""
    lifecycle.stop_one(container)


def keep_restored(swaps: dict[str, SwapHandle]) -> list[str]:
    """After a successful restore: keep the restored data of every volume
    (the decision), then start deleting the old data in the background
    (tidying; a failure there is logged and the next cleanup finishes it).
    Never raises: the restore has succeeded. Returns warnings for what is
    left to finish."""
    warnings: list[str] = []
    with deferred():  # the decision is made for every volume, signal or not
        for name, handle in swaps.items():
            try:
                handle.keep()
            except Exception as exc:
                logger.error("volume %s: could not give up the old data: %s", name, brief(exc))
                warnings.append(
                    f"volume {name}: restored and in use, but its previous data could not be "
                    f"given up ({brief(exc)}): it is still at {handle.old}, where it makes "
                    "the next restore of this app refuse (an unfinished swap); once the "
                    f"restored data is confirmed, delete {handle.old} by hand"
                )
        stopped: BaseException | None = take_held()
    committed = {name: h for name, h in swaps.items() if h.state == "committed"}
    if stopped is None:
        # Off the critical path: the app is up; the old data, renamed aside,
        # is deleted on a thread of its own (engine.restore.drop).
        drop_in_background(handle.data_dir.parent for handle in committed.values())
        return warnings
    for name, handle in committed.items():
        left = ", ".join(str(path) for path in _trash_in(handle.data_dir.parent))
        logger.warning("volume %s: old data not deleted (%s): %s", name, brief(stopped), left)
        warnings.append(
            f"volume {name}: its previous data was not deleted (not tried: {brief(stopped)}); "
            f"left in {left}, which the next cleanup (backup cleanup, or the worker's "
            "recovery) deletes"
        )
    return warnings


def _trash_in(volume_dir: Path) -> list[Path]:
    try:
        return sorted(p for p in volume_dir.iterdir() if p.name.startswith(TRASH_PREFIX))
    except OSError:
        return []
