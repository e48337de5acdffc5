"""Running a drill: deep verify, then each database dump restored into a
throwaway container and checked (engine.drill), at backup priority, within
a time limit, after a disk-space check, one drill per host at a time.

The outcome is `passed`, `failed` (with a reason naming what did not come
back) or `skipped` (not tried, and why). A failed drill notifies the
targets a failed backup would."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from drills import conf
from drills.models import Drill
from drills.services.notify import drill_failed
from drills.services.scheduled import settle_drill_firing
from engine.docker_client import connect
from engine.drill.archive import extract_dumps
from engine.drill.deadline import Deadline, DrillTimeout
from engine.drill.run import DatabaseResult, drill_databases
from engine.errors import EngineError, Terminated
from engine.priority import lower_priority
from engine.progress import Progress
from snapshots.locks import try_acquire
from snapshots.models import Run, Snapshot
from snapshots.run_reporter import run_reporter
from snapshots.runs import claim_run, fail_run, finish_run
from snapshots.services.encryption import identities, passphrase
from snapshots.services.verify import verify_snapshot
from snapshots.storage_locations import get_storage

logger = logging.getLogger(__name__)

Outcome = tuple[str, str, list[dict[str, Any]], dict[str, Any]]


def host_lock_id(host_id: str | None = None) -> str:
    """The AppLock row that holds this host's one drill (no app has a ':')."""
    return f"drill:{host_id or settings.BACKUP_HOST_ID}"


def spool_dir(drill_id: object) -> Path:
    # Named like this, recovery's spool sweep knows it (snapshots/recovery.py).
    return Path(settings.BACKUP_SPOOL_DIR) / f"drill-{drill_id}"


def run_drill(drill_id: str, on_progress: Callable[[Progress], None] | None = None) -> Drill:
    run = claim_run(drill_id)
    if run is None:  # a redelivered message, or another worker has it
        return Drill.objects.get(pk=drill_id)
    Drill.objects.filter(pk=drill_id).update(
        state=Drill.State.RUNNING, started_at=timezone.now(), host_id=settings.BACKUP_HOST_ID
    )
    started = time.monotonic()
    lease = try_acquire(host_lock_id(), run.pk, host_id=settings.BACKUP_HOST_ID)
    if lease is None:
        busy = f"another drill is running on this host ({settings.BACKUP_HOST_ID}); one at a time"
        return _end(run, started, (Drill.Outcome.SKIPPED, busy, [], {}))
    try:
        if settings.BACKUP_IO_CLASS != "none":
            lower_priority(settings.BACKUP_NICE, settings.BACKUP_IO_CLASS)
        with run_reporter(run, on_progress, lease=lease) as progress:
            outcome = _drill(run, started, progress)
    except Terminated as exc:
        _end(run, started, (Drill.Outcome.FAILED, str(exc), [], {}))
        raise
    except SoftTimeLimitExceeded:  # the task's backstop: the drill's own limit came first
        outcome = (Drill.Outcome.FAILED, "the drill's task time limit was reached", [], {})
    except (EngineError, docker.errors.DockerException) as exc:
        outcome = (Drill.Outcome.FAILED, str(exc), [], {})
    except Exception as exc:
        logger.exception("drill %s crashed", run.pk)
        outcome = (Drill.Outcome.FAILED, f"internal error ({type(exc).__name__}); see the "
                   "worker log", [], {})  # fmt: skip
    finally:
        lease.release()
    return _end(run, started, outcome)


def _end(run: Run, started: float, outcome: Outcome) -> Drill:
    result, reason, databases, verify = outcome
    Drill.objects.filter(pk=run.pk).update(
        state=Drill.State.FINISHED, outcome=result, reason=reason, databases=databases,
        verify=verify, duration_seconds=round(time.monotonic() - started, 3),
        finished_at=timezone.now(),
    )  # fmt: skip
    summary = {"outcome": result, "reason": reason, "databases": databases,
               "backup_id": run.snapshot.backup_id if run.snapshot else None}  # fmt: skip
    if result == Drill.Outcome.FAILED:
        fail_run(run, reason or "the drill failed", summary)
    else:
        finish_run(run, summary)
    drill = Drill.objects.get(pk=run.pk)
    settle_drill_firing(drill)
    if result == Drill.Outcome.FAILED:
        drill_failed(drill)  # never raises
    return drill


def _drill(run: Run, started: float, progress: Callable[[Progress], None]) -> Outcome:
    snapshot = run.snapshot
    if snapshot is None:
        return Drill.Outcome.FAILED, "the snapshot was deleted", [], {}
    deadline = Deadline(conf.time_limit_seconds(), started)
    verify: dict[str, Any] = {}
    client = connect(settings.DOCKER_HOST)
    try:
        room = _room(client, snapshot)
        if room:
            return Drill.Outcome.SKIPPED, room, [], {}
        report = verify_snapshot(
            snapshot, deep=True, progress=deadline.guard(progress, "during the deep verify")
        )
        verify = {k: report[k] for k in ("valid", "checksum_match", "sidecar_match", "errors")}
        if not report["valid"]:
            errors = "; ".join(report["errors"][:5])
            return Drill.Outcome.FAILED, f"deep verify failed: {errors}", [], verify
        deadline.check("after the deep verify")
        results = _restore_and_check(client, run, snapshot, deadline, progress)
    except DrillTimeout as exc:
        return Drill.Outcome.FAILED, str(exc), [], verify
    finally:
        client.close()
    return (*_judge(results), [r.to_json() for r in results], verify)


def _restore_and_check(
    client: docker.DockerClient,
    run: Run,
    snapshot: Snapshot,
    deadline: Deadline,
    progress: Callable[[Progress], None],
) -> list[DatabaseResult]:
    where = spool_dir(run.pk)
    where.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        secret = passphrase() if snapshot.encrypted else None
        archive = extract_dumps(
            get_storage(snapshot.storage_location), snapshot.storage_key, where,
            compression=snapshot.compression,  # type: ignore[arg-type]
            encrypted=snapshot.encrypted, identities=identities() if snapshot.encrypted else [],
            passphrase=secret,
            progress=deadline.guard(progress, "during the extraction of the dumps"),
        )  # fmt: skip
        entries = list(archive.backup.get("databases", []))
        recorded = {c.get("name"): c.get("image") for c in archive.backup.get("containers", [])}

        def image_for(container: str, _group: list[dict[str, Any]]) -> tuple[str | None, str]:
            return _image(client, container, recorded.get(container))

        return drill_databases(
            client, str(run.pk), entries, archive.dump_files, image_for, deadline=deadline,
            progress=progress,
        )  # fmt: skip
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _image(
    client: docker.DockerClient, container: str, recorded: str | None
) -> tuple[str | None, str]:
    """The image id of the app's database container now (the same version it
    runs), else the image backup.json recorded if it is on this host. Never pulled."""
    try:
        image = client.containers.get(container).attrs["Image"]
        return image, f"image of container {container}"
    except docker.errors.NotFound:
        pass
    if recorded:
        try:
            return client.images.get(recorded).id, f"image {recorded} recorded in the backup"
        except docker.errors.ImageNotFound:
            pass
    return None, (f"container {container} is gone and its image {recorded or '(not recorded)'} "
                  "is not on this host: the drill never pulls an image")  # fmt: skip


def _room(client: docker.DockerClient, snapshot: Snapshot) -> str:
    """Why there is not room enough for this drill ('' when there is)."""
    dumps = sum(int(d.get("size") or 0) for d in (snapshot.contents or {}).get("databases", []))
    need = int(dumps * conf.disk_factor()) + conf.min_free_bytes()
    places = [("the spool", Path(settings.BACKUP_SPOOL_DIR))]
    with contextlib.suppress(docker.errors.APIError, KeyError):
        places.append(("Docker's data root", Path(client.info()["DockerRootDir"])))
    for label, path in places:
        probe = path if path.exists() else path.parent
        try:
            free = shutil.disk_usage(probe).free
        except OSError:
            continue  # not visible from here (a remote engine): not checked
        if free < need:
            return (
                f"not enough free disk space in {label} ({path}): the drill needs about "
                f"{need >> 20} MiB for {dumps >> 20} MiB of dumps, {free >> 20} MiB free"
            )
    return ""


def _judge(results: list[DatabaseResult]) -> tuple[str, str]:
    if not results:
        return Drill.Outcome.PASSED, "no database dump in this snapshot: the deep verify passed"
    failed = [r for r in results if not r.ok]
    if failed:
        # Which database, where, and what: the operator's first line (API,
        # admin, CLI, notification); the rest is in the per-database figures.
        reasons = "; ".join(f"database {r.database} ({r.engine}, container {r.container}): "
                            f"{r.reason}" for r in failed[:5])  # fmt: skip
        more = f" (and {len(failed) - 5} more databases)" if len(failed) > 5 else ""
        return Drill.Outcome.FAILED, reasons + more
    if all(r.skipped for r in results):
        return Drill.Outcome.SKIPPED, "; ".join(sorted({r.reason for r in results}))
    notes = sorted({r.reason for r in results if r.reason})
    return Drill.Outcome.PASSED, "; ".join(notes)
