"""Restore an app from a validated archive, rolling back on any failure.

Order (issue 5): stop the app's running containers → extract the planned
volumes into staging dirs beside their data and swap them in (old data kept)
→ start the database containers and restore their dumps → start what was
running and check it stays up. A running database container whose dumps
are restored and none of whose volumes is swapped is not stopped at all:
its dumps are loaded into the running server while the rest of the app is
down (issue 15: its shutdown, start and wait until ready were most of the
downtime beside the load itself). Any failure in there, a signal (Terminated)
included: the old volume data goes back, the databases are restored from the
safety backup, the app is started as it was, each step tried whatever
happened to the others (the engine unreachable is one step's failure, not
the end of the rollback), and RestoreFailed says what was put back and what
could not be. Once the app runs on the restored data the restore has
succeeded: the restored data is kept for every volume (the decision), and
deleting the old data is tidying whose failure is a warning. Validation and
the safety backup happen before this is called (the service does them).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from engine import steps
from engine.dumps import DumpFile, restore_database, wait_until_ready
from engine.errors import EngineError, Terminated, brief
from engine.inventory import AppInfo, ContainerInfo, DatabaseInfo
from engine.progress import Progress, ProgressCallback, no_progress
from engine.restore import lifecycle
from engine.restore import timeline as phases
from engine.restore.database_swap import loaded_and_kept, swap_databases
from engine.restore.extract import extract_volumes
from engine.restore.plan import OpenStream, RestorePlan
from engine.restore.settle import (
    NO_DATABASE_ROLLBACK,
    Changes,
    DatabaseRollback,
    keep_restored,
    roll_back,
)
from engine.restore.shadow_loads import ShadowLoads, ShadowTarget
from engine.restore.staging import Staged, volume_data_dir
from engine.restore.timeline import Timeline
from engine.restore.volume_swap import stage_dir_for, swap_in
from engine.restore.volume_users import (
    LIVE_STATES,
    containers_to_stop,
    databases_kept_running,
    refuse_foreign_users,
)
from engine.steps import StepGuard, no_guard
from engine.termination import deferred

logger = logging.getLogger(__name__)


class RestoreFailed(EngineError):
    """The restore failed and was rolled back: ROLLED_BACK says what was put
    back, NOT_ROLLED_BACK what could not be (and why)."""

    def __init__(
        self, message: str, rolled_back: list[str], not_rolled_back: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.rolled_back = rolled_back
        self.not_rolled_back = not_rolled_back or []

    @property
    def left_undone(self) -> list[str]:
        """What could not be rolled back and could be on a retry."""
        return [item for item in self.not_rolled_back if item != NO_DATABASE_ROLLBACK]

    @property
    def terminated(self) -> Terminated | None:
        """The signal that ended the restore, if one did: the caller raises it
        again once the run says what happened."""
        return self.__cause__ if isinstance(self.__cause__, Terminated) else None


@dataclass
class RestoreOutcome:
    restored_volumes: list[str] = field(default_factory=list)
    skipped_volumes: dict[str, str] = field(default_factory=dict)
    database_restored: bool = False
    databases: list[str] = field(default_factory=list)
    started_containers: list[str] = field(default_factory=list)
    stopped_containers: list[str] = field(default_factory=list)
    # Database containers whose dumps were loaded into them running: never stopped.
    kept_running: list[str] = field(default_factory=list)
    # Databases loaded while the app ran and swapped in during the downtime.
    loaded_while_running: list[str] = field(default_factory=list)
    # Why the other MySQL/MariaDB dumps were loaded in the downtime.
    loaded_in_downtime: list[str] = field(default_factory=list)
    # stop_app=False (--no-stop) could not be followed: volumes were swapped.
    no_stop_ignored: bool = False
    # Restored, but: old data not deleted yet, or not even given up.
    warnings: list[str] = field(default_factory=list)


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
    staged: Staged | None = None,
    timeline: Timeline | None = None,
) -> RestoreOutcome:
    """GUARD is called before every step that changes the app (stop, each
    volume swap, each database, start, commit, rollback): see engine.steps.
    STAGED: the volumes were extracted and checked, and the dumps spooled
    into SPOOL_DIR, while the app ran (engine.restore.staging); from here its
    staging dirs are this function's to swap in or remove. Without it the
    volumes are extracted after the stop (the old order). TIMELINE gets the
    phases' times and the downtime.
    A guard that refuses the rollback (the lease is lost) leaves the undoing
    to the new lease holder, the run's recovery.

    Raw volume data can only be swapped under stopped containers (a live one
    keeps the old directory mounted): with volumes to swap the app's live
    containers are stopped even with STOP_APP false (the outcome says so),
    paused ones included (paused again afterwards), and any other container
    mounting a swapped volume makes the restore refuse (volume_users). The
    database containers volume_users.databases_kept_running names stay up
    throughout; a rollback loads their safety backup into them running."""
    stopping = stop_app or bool(plan.raw_volumes)
    kept: list[ContainerInfo] = []
    if stopping:
        # A database loaded from its dump stays up when none of its volumes
        # is swapped: its data changes through the server, the rest of the
        # app being down meanwhile (volume_users.databases_kept_running).
        kept = databases_kept_running(
            client, [db for db, _ in plan.databases.values()], plan.raw_volumes
        )
        kept_ids = {c.id for c in kept}
        was_running = [c for c in containers_to_stop(app) if c.id not in kept_ids]
    else:  # nothing stopped: what runs is checked to keep running
        was_running = [c for c in app.containers if c.state == "running" and not c.one_off]
    ids = [c.id for c in was_running]
    paused = [c.id for c in was_running if c.state == "paused"]
    outcome = RestoreOutcome(
        skipped_volumes=dict(plan.skipped_volumes), kept_running=[c.name for c in kept]
    )
    changes = Changes()
    timeline = timeline or Timeline()
    shadows: ShadowLoads | None = None
    if staged is not None:  # handed over: a failure below removes them (roll_back)
        changes.stages, staged.stages = dict(staged.stages), {}
        shadows, staged.shadows = staged.shadows, None
    spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        loaded: dict[str, ShadowTarget] = {}
        if shadows is not None:  # each load must have ended before the stop
            with timeline.phase(phases.DATABASES_WHILE_RUNNING):
                # Nothing stopped (--no-stop, no volume): every server stays up.
                loaded = loaded_and_kept(shadows, kept if stopping else None)
            outcome.loaded_in_downtime = list(shadows.skipped)
        if stopping:
            # "paused": recovery pauses these again once it started them.
            guard(steps.STOP, {"containers": ids, "paused": paused})
            timeline.going_down()
            with timeline.phase(phases.STOP):
                _stop(client, ids, progress)
            outcome.stopped_containers = [c.name for c in was_running]
            outcome.no_stop_ignored = not stop_app
        _restore_volumes(
            client, app, plan, open_stream, spool_dir, progress, changes, guard, ids,
            staged=staged is not None, timeline=timeline,
        )  # fmt: skip
        outcome.restored_volumes = sorted(changes.swaps)
        if plan.databases:
            with timeline.phase(phases.DATABASES):
                rest, swapped_in = swap_databases(client, plan, loaded, guard, changes)
                outcome.databases += swapped_in
                outcome.loaded_while_running += swapped_in
                if rest:
                    changes.databases = True
                    outcome.databases += _restore_databases(
                        client, rest, spool_dir, progress, guard
                    )
            outcome.database_restored = True
        shutil.rmtree(spool_dir, ignore_errors=True)  # the dumps are loaded
        progress(Progress("starting"))
        guard(steps.START, {"containers": ids, "paused": paused})
        with timeline.phase(phases.START):
            outcome.started_containers = _start_and_check(client, was_running)
        timeline.came_up(client, ids)
    except BaseException as exc:
        with deferred():  # a signal now waits for the rollback, then the error is raised
            shutil.rmtree(spool_dir, ignore_errors=True)
            try:
                guard(steps.ROLLBACK, {})
            except BaseException as refused:
                raise RestoreFailed(
                    f"restore failed: {brief(exc)}; not rolled back here: {refused}", []
                ) from exc
            # Stopped before the restore (one-offs that run are neither).
            stopped_before = [
                c for c in app.containers if c.id not in ids and c.state not in LIVE_STATES
            ]
            done, failed = roll_back(
                client, changes, database_rollback, was_running, stopped_before, kept
            )
            if shadows is not None:  # the restored tables, swapped back out, go
                # An aside database not swapped back holds the app's tables: kept.
                keep = {record.names.aside for _, record in changes.database_swaps}
                failed += [f"not dropped: {left}" for left in shadows.drop(keep)]
            message = f"restore failed: {brief(exc)}"
            if failed:
                message += f"; NOT rolled back: {'; '.join(failed)}"
            raise RestoreFailed(message, done, failed) from exc
    # The app runs on the restored data: the restore has succeeded. The guard
    # may still refuse the decision (the lease is lost: its new holder makes
    # it); after that, nothing can undo the restore or fail it.
    guard(steps.COMMIT, {})
    if outcome.no_stop_ignored:
        outcome.warnings.append(
            f"--no-stop (stop_app=false) was not followed: volumes "
            f"{', '.join(outcome.restored_volumes)} were swapped, which needs every container "
            f"mounting them stopped; stopped, then started again: "
            f"{', '.join(outcome.stopped_containers) or 'none'}"
        )
    outcome.warnings += keep_restored(changes.swaps)
    if shadows is not None:  # the app is up: the tables swapped out go
        with timeline.phase(phases.DROP_SHADOWS):
            outcome.warnings += [
                f"the previous tables were not dropped: {left}; drop those databases once "
                "the restored data is confirmed (or let the next recovery do it)"
                for left in shadows.drop()
            ]
    return outcome


def _stop(client: docker.DockerClient, ids: list[str], progress: ProgressCallback) -> None:
    """Stop IDS, dependents before their databases, concurrently per rank,
    each with its own stop timeout (engine.restore.lifecycle)."""
    progress(Progress("stopping"))
    lifecycle.stop_in_order([client.containers.get(container_id) for container_id in ids])


def _restore_volumes(
    client: docker.DockerClient,
    app: AppInfo,
    plan: RestorePlan,
    open_stream: OpenStream,
    spool_dir: Path,
    progress: ProgressCallback,
    changes: Changes,
    guard: StepGuard,
    stopped: list[str],
    *,
    staged: bool,
    timeline: Timeline,
) -> None:
    """Extract the planned volumes into staging dirs (unless STAGED: done,
    CHANGES.stages has them), then swap each in. CHANGES records each staging
    dir and each swap as soon as it exists, so a failure at any point leaves
    the rollback knowing all of them. Checked again just before the swaps:
    no container outside STOPPED (ids) came to mount a volume meanwhile (the
    service checked before the safety backup)."""
    data_dirs = {
        name: volume_data_dir(client, app, name, plan.backup)[0] for name in plan.raw_volumes
    }
    if not staged:
        with timeline.phase(phases.EXTRACT):
            for name, data_dir in data_dirs.items():
                changes.stages[name] = stage_dir_for(data_dir)
            progress(Progress("extracting"))
            with open_stream() as stream:
                extract_volumes(
                    stream, dict(changes.stages), spool_dir=spool_dir, progress=progress
                )
    refuse_foreign_users(client, app, data_dirs, stopped, changed="nothing was swapped")
    with deferred(), timeline.phase(phases.SWAP):  # a swap made must be recorded
        for name, data_dir in data_dirs.items():
            guard(steps.SWAP, {"volume": name, "dir": str(data_dir.parent)})
            changes.swaps[name] = swap_in(data_dir, changes.stages[name])
            del changes.stages[name]


def _restore_databases(
    client: docker.DockerClient,
    databases: Mapping[str, tuple[DatabaseInfo, list[dict[str, Any]]]],
    spool_dir: Path,
    progress: ProgressCallback,
    guard: StepGuard = no_guard,
) -> list[str]:
    """Load each database container's dumps, starting it first if it is not
    running. Several containers are loaded at the same time, one thread
    each (separate servers: they share only the CPU); the guard is called
    for each on this thread first. A failure is raised once every load has
    ended, so none runs on under the rollback that follows."""
    jobs: list[tuple[DatabaseInfo, list[DumpFile]]] = []
    for service, (db, entries) in databases.items():
        progress(Progress("restoring database", detail=service))
        container = client.containers.get(db.container.id)
        container.reload()
        running = container.status == "running"
        # "running": not started by the restore, so recovery leaves it running.
        guard(steps.DATABASE, {"container": db.container.id, "running": running})
        if not running:
            container.start()
        dumps = [
            DumpFile.from_json(entry, spool_dir.joinpath(*entry["archive_name"].split("/")))
            for entry in entries
        ]
        jobs.append((db, dumps))
    if len(jobs) == 1:  # on this thread: nothing to overlap
        _load(client, *jobs[0], progress)
    elif jobs:
        with ThreadPoolExecutor(len(jobs), thread_name_prefix="restore-db") as pool:
            futures = [pool.submit(_load, client, db, dumps, progress) for db, dumps in jobs]
            errors = [exc for exc in (_error_of(f) for f in futures) if exc is not None]
        for exc in errors[1:]:
            logger.error("database restore failed too: %s", brief(exc))
        if errors:
            raise errors[0]
    return [d.database or d.archive_name for _, dumps in jobs for d in dumps]


def _load(
    client: docker.DockerClient, db: DatabaseInfo, dumps: list[DumpFile], progress: ProgressCallback
) -> None:
    wait_until_ready(client, db)
    restore_database(client, db, dumps, progress)


def _error_of(future: Future[None]) -> BaseException | None:
    """FUTURE's exception once it has ended (waiting for it)."""
    try:
        future.result()
    except BaseException as exc:
        return exc
    return None


def _start_and_check(client: docker.DockerClient, infos: list[ContainerInfo]) -> list[str]:
    """Start INFOS again, databases first, check that those that were
    running or paused stay up (a restarting one was not staying up before;
    a healthcheck is waited on), then pause again the ones that were paused."""
    containers = [client.containers.get(info.id) for info in infos]
    check = [info.id for info in infos if info.state != "restarting"]
    lifecycle.raise_for_failures(lifecycle.start_in_order(containers, check=check))
    for info, container in zip(infos, containers, strict=True):
        if info.state == "paused":
            container.pause()
    return [c.name for c in containers]


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
        return _restore_databases(client, plan.databases, spool_dir, progress)
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
