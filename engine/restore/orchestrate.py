"""Restore an app from a validated archive, rolling back on any failure.

Order (issue 5): stop the app's running containers → extract the planned
volumes into staging dirs beside their data and swap them in (old data kept)
→ start the database containers and restore their dumps → start what was
running and check it stays up. Any failure in there: the old volume data goes
back, the databases are restored from the safety backup, the app is started
as it was, and the error is raised with what was rolled back. Validation and
the safety backup happen before this is called (the service does them).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from engine import steps
from engine.dumps import DumpFile, restore_database, wait_until_ready
from engine.errors import EngineError
from engine.inventory import AppInfo
from engine.progress import Progress, ProgressCallback, no_progress
from engine.restore.extract import extract_volumes
from engine.restore.plan import OpenStream, RestorePlan
from engine.restore.volume_swap import SwapHandle, discard_stage, stage_dir_for, swap_in
from engine.steps import StepGuard, no_guard

logger = logging.getLogger(__name__)

STAY_UP_SECONDS = 3.0  # a container that crashes on bad data usually does so at once
HEALTHY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 30


class RestoreFailed(EngineError):
    def __init__(self, message: str, rolled_back: list[str]) -> None:
        super().__init__(message)
        self.rolled_back = rolled_back


@dataclass
class RestoreOutcome:
    restored_volumes: list[str] = field(default_factory=list)
    skipped_volumes: dict[str, str] = field(default_factory=dict)
    database_restored: bool = False
    databases: list[str] = field(default_factory=list)
    started_containers: list[str] = field(default_factory=list)


# Restores the databases from the safety backup: given by the service, which
# knows where that backup is stored. None when no safety backup was taken.
DatabaseRollback = Callable[[], list[str]]


def restore_app(
    *,
    client: docker.DockerClient,
    app: AppInfo,
    plan: RestorePlan,
    open_stream: OpenStream,
    stop_app: bool,
    spool_dir: Path,
    progress: ProgressCallback = no_progress,
    database_rollback: DatabaseRollback | None = None,
    guard: StepGuard = no_guard,
) -> RestoreOutcome:
    """GUARD is called before every step that changes the app (stop, each
    volume swap, each database, start, commit, rollback): see engine.steps.
    A guard that refuses the rollback (the lease is lost) leaves the undoing
    to the new lease holder, the run's recovery."""
    was_running = [c for c in app.containers if c.state == "running" and not c.one_off]
    outcome = RestoreOutcome(skipped_volumes=dict(plan.skipped_volumes))
    swaps: dict[str, SwapHandle] = {}
    databases_touched = False
    spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if stop_app or plan.raw_volumes:
            # Raw volume data can only be swapped under stopped containers:
            # a running one keeps the old directory mounted.
            guard(steps.STOP, {"containers": [c.id for c in was_running]})
            _stop(client, [c.id for c in was_running], progress)
        swaps = _restore_volumes(client, app, plan, open_stream, spool_dir, progress, guard)
        outcome.restored_volumes = sorted(swaps)
        if plan.databases:
            databases_touched = True
            outcome.databases = _restore_databases(client, plan, spool_dir, progress, guard)
            outcome.database_restored = True
        progress(Progress("starting"))
        guard(steps.START, {"containers": [c.id for c in was_running]})
        outcome.started_containers = _start_and_check(client, [c.id for c in was_running])
    except BaseException as exc:
        try:
            guard(steps.ROLLBACK, {})
        except BaseException as refused:
            raise RestoreFailed(
                f"restore failed: {exc}; not rolled back here: {refused}", []
            ) from exc
        rolled_back = _roll_back(
            client, app, swaps, databases_touched, database_rollback, was_running
        )
        message = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
        raise RestoreFailed(f"restore failed: {message}", rolled_back) from exc
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    guard(steps.COMMIT, {})
    for handle in swaps.values():
        handle.commit()  # only now is the old data dropped
    return outcome


def _stop(client: docker.DockerClient, ids: list[str], progress: ProgressCallback) -> None:
    progress(Progress("stopping"))
    for container_id in ids:
        client.containers.get(container_id).stop(timeout=STOP_TIMEOUT_SECONDS)


def _volume_data_dir(
    client: docker.DockerClient, app: AppInfo, name: str, backup: dict[str, Any]
) -> Path:
    """The volume's _data dir; the volume is created, labelled as Compose
    would, when the app no longer has it (uninstalled and recreated app)."""
    try:
        volume = client.volumes.get(name)
    except docker.errors.NotFound:
        labels = next((v.get("labels") or {} for v in backup["volumes"] if v["name"] == name), {})
        labels = {**labels, "com.docker.compose.project": app.app_id}
        volume = client.volumes.create(name=name, labels=labels)
    return Path(volume.attrs["Mountpoint"])


def _restore_volumes(
    client: docker.DockerClient,
    app: AppInfo,
    plan: RestorePlan,
    open_stream: OpenStream,
    spool_dir: Path,
    progress: ProgressCallback,
    guard: StepGuard,
) -> dict[str, SwapHandle]:
    data_dirs = {
        name: _volume_data_dir(client, app, name, plan.backup) for name in plan.raw_volumes
    }
    for data_dir in data_dirs.values():
        data_dir.mkdir(parents=True, exist_ok=True)
    staged = {name: stage_dir_for(data_dir) for name, data_dir in data_dirs.items()}
    try:
        progress(Progress("extracting"))
        with open_stream() as stream:
            extract_volumes(stream, staged, spool_dir=spool_dir, progress=progress)
    except BaseException:
        for stage in staged.values():
            discard_stage(stage)
        raise
    swaps: dict[str, SwapHandle] = {}
    try:
        for name, data_dir in data_dirs.items():
            guard(steps.SWAP, {"volume": name, "dir": str(data_dir.parent)})
            swaps[name] = swap_in(data_dir, staged[name])
    except BaseException:
        for handle in swaps.values():
            handle.rollback()
        for name, stage in staged.items():
            if name not in swaps:
                discard_stage(stage)
        raise
    return swaps


def _restore_databases(
    client: docker.DockerClient,
    plan: RestorePlan,
    spool_dir: Path,
    progress: ProgressCallback,
    guard: StepGuard = no_guard,
) -> list[str]:
    restored: list[str] = []
    for service, (db, entries) in plan.databases.items():
        progress(Progress("restoring database", detail=service))
        guard(steps.DATABASE, {"container": db.container.id})
        container = client.containers.get(db.container.id)
        container.reload()
        if container.status != "running":
            container.start()
        wait_until_ready(client, db)
        dumps = [
            DumpFile.from_json(entry, spool_dir.joinpath(*entry["archive_name"].split("/")))
            for entry in entries
        ]
        restore_database(client, db, dumps, progress)
        restored += [d.database or d.archive_name for d in dumps]
    return restored


def _start_and_check(client: docker.DockerClient, ids: list[str]) -> list[str]:
    containers = [client.containers.get(i) for i in ids]
    for container in containers:
        container.reload()
        if container.status != "running":
            container.start()
    time.sleep(STAY_UP_SECONDS)
    deadline = time.monotonic() + HEALTHY_TIMEOUT_SECONDS
    for container in containers:
        while True:
            container.reload()
            if container.status != "running":
                logs = container.logs(tail=5).decode(errors="replace").strip()
                raise EngineError(f"container {container.name} did not stay running: {logs[-300:]}")
            health = container.attrs.get("State", {}).get("Health", {}).get("Status")
            if health in (None, "healthy"):
                break
            if health == "unhealthy" or time.monotonic() > deadline:
                raise EngineError(f"container {container.name} is {health} after the restore")
            time.sleep(1)
    return [c.name for c in containers]


def _roll_back(
    client: docker.DockerClient,
    app: AppInfo,
    swaps: dict[str, SwapHandle],
    databases_touched: bool,
    database_rollback: DatabaseRollback | None,
    was_running: list[Any],
) -> list[str]:
    """Put things back as they were; every step is tried even if one fails."""
    done: list[str] = []
    running_ids = {c.id for c in was_running}
    for info in app.containers:
        if info.id in running_ids:
            try:
                client.containers.get(info.id).stop(timeout=STOP_TIMEOUT_SECONDS)
            except docker.errors.APIError as exc:
                logger.error("rollback: could not stop %s: %s", info.name, exc)
    for name, handle in swaps.items():
        try:
            handle.rollback()
            done.append(f"volume {name}")
        except Exception as exc:  # keep going: every other step must still be tried
            logger.error("rollback of volume %s failed: %s", name, exc)
    if databases_touched and database_rollback is not None:
        try:
            done += [f"database {name}" for name in database_rollback()]
        except Exception as exc:
            logger.error("rollback of the databases from the safety backup failed: %s", exc)
    for info in was_running:
        try:
            client.containers.get(info.id).start()
            done.append(f"started {info.name}")
        except docker.errors.APIError as exc:
            logger.error("rollback: could not start %s: %s", info.name, exc)
    return done


def restore_databases_from_archive(
    *,
    client: docker.DockerClient,
    app: AppInfo,
    open_stream: OpenStream,
    spool_dir: Path,
    progress: ProgressCallback = no_progress,
) -> list[str]:
    """Restore only the database dumps of an archive (the safety backup's,
    during a rollback) into the app's database containers."""
    from engine.restore.plan import make_plan, read_backup_json

    plan = make_plan(client, app, read_backup_json(open_stream), restore_database=True)
    spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        with open_stream() as stream:
            extract_volumes(stream, {}, spool_dir=spool_dir, progress=progress)
        return _restore_databases(client, plan, spool_dir, progress)
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
