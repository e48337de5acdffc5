"""Off-site copies: after a backup stored as `local+<s3>` or `<s3>`
completes, an upload run copies its archive and sidecar to each off-site
location, resumably (the parts the server acknowledged are rows: a run
that died resumes and sends only the rest), and checks the object (size
and SHA-256 by HEAD; a read-back too when asked). For `<s3>` alone the
local copy is removed once every off-site copy is verified.

A failed upload (wrong credentials, a missing bucket, an unreachable
endpoint): the copy is marked failed with the reason, naming the location
and never a secret. A `local+<s3>` snapshot stays a completed local
snapshot whose off-site copy failed (its local copy is as good as ever and
a later upload can be asked for); an `<s3>` snapshot, which was to have no
local copy, is failed like a backup that could not store its archive, and
its staged local files are removed."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Now

from engine.errors import EngineError, ObjectNotFound, StorageError, Terminated
from engine.progress import Progress
from snapshots.models import Run, Snapshot
from snapshots.models_offsite import OffsiteCopy
from snapshots.offsite_ledger import DjangoPartLedger
from snapshots.run_reporter import run_reporter
from snapshots.runs import claim_run, finish_run
from snapshots.selectors_offsite import where
from snapshots.services.offsite_recovery import fail_upload, leave_for_recovery, resumable
from snapshots.storage_locations import (
    LOCAL,
    get_backend,
    keeps_local_copy,
    offsite_targets,
)
from storage.base import Storage
from storage.keys import validate_key

logger = logging.getLogger(__name__)

UPLOAD_TASK = "snapshots.upload_snapshot"

_BLOCK = 1024 * 1024


class UploadRefused(EngineError):
    """The snapshot cannot be uploaded (not completed, no off-site location)."""


def upload_queue(snapshot: Snapshot) -> str:
    """The app's host queue: the archive to upload is on that host's disk."""
    return settings.BACKUP_TASK_QUEUE or f"host.{snapshot.host_id}"


# -- requesting ------------------------------------------------------------------


def request_upload(snapshot: Snapshot, *, deep_check: bool | None = None) -> Run:
    """The pending upload run and a copy row per off-site location."""
    targets = offsite_targets(snapshot.storage_location)
    if not targets:
        raise UploadRefused(f"snapshot {snapshot.backup_id} is stored locally only")
    if snapshot.status != Snapshot.Status.COMPLETED or not snapshot.storage_key:
        raise UploadRefused(f"snapshot {snapshot.backup_id} is {snapshot.status}")
    deep = settings.BACKUP_S3_DEEP_CHECK if deep_check is None else deep_check
    with transaction.atomic():
        run = Run.objects.create(
            operation=Run.Operation.UPLOAD, app_id=snapshot.app_id, snapshot=snapshot,
            host_id=snapshot.host_id, options={"targets": targets, "deep_check": deep},
        )  # fmt: skip
        for target in targets:
            copy, _ = OffsiteCopy.objects.get_or_create(
                snapshot=snapshot, location=target, defaults={"key": snapshot.storage_key}
            )
            copy.run = run
            if copy.state != OffsiteCopy.State.VERIFIED:  # asked again: only what is missing
                copy.state, copy.error = OffsiteCopy.State.PENDING, ""
            copy.save(update_fields=["run", "state", "error", "updated_at"])
    return run


def queue_upload(snapshot: Snapshot) -> Run | None:
    """After a backup completed: its upload run, sent to the host's queue
    once the rows are committed. None for a local-only snapshot. Never
    raises: the backup is done whatever happens to its copy (a failure is
    on the upload run and the copy rows)."""
    if not offsite_targets(snapshot.storage_location):
        return None
    try:
        run = request_upload(snapshot)
    except Exception as exc:
        logger.exception("could not request the upload of %s", snapshot.backup_id)
        Snapshot.objects.filter(pk=snapshot.pk).update(
            error=f"its off-site upload could not be requested ({type(exc).__name__})"
        )
        return None
    transaction.on_commit(lambda: send_upload(run, snapshot))
    return run


def send_upload(run: Run, snapshot: Snapshot) -> None:
    from backup_project.celery import app as celery_app

    try:
        celery_app.send_task(
            UPLOAD_TASK, args=[str(run.pk)], task_id=str(run.pk), queue=upload_queue(snapshot)
        )
    except Exception as exc:  # kombu raises many types for "no broker"
        # The type only: a broker error's text may carry the broker URL.
        logger.error("could not queue the upload run %s: %s", run.pk, type(exc).__name__)
        # Left pending: `backup upload`/recovery can still run it; it is
        # failed after BACKUP_PENDING_TIMEOUT_SECONDS otherwise.


# -- running -----------------------------------------------------------------------


def run_upload(run_id: str, on_progress: Callable[[Progress], None] | None = None) -> Run:
    """Do a pending upload run. Returns the run, completed or failed. Stopped
    by a signal (a worker shutting down), the run is left for this host's
    recovery, which resumes it, and the Terminated is raised again."""
    run = claim_run(run_id)
    if run is None:
        return Run.objects.get(pk=run_id)
    snapshot = run.snapshot
    try:
        if snapshot is None or snapshot.status != Snapshot.Status.COMPLETED:
            raise UploadRefused("the snapshot was deleted or is no longer completed")
        # The reporter stops (its last report written) before the final state.
        with run_reporter(run, on_progress) as progress:
            result = _upload_all(run, snapshot, progress)
        finish_run(run, result | {"resumes": (run.result or {}).get("resumes", 0)})
    except Terminated as exc:
        leave_for_recovery(run, str(exc))
        raise
    except EngineError as exc:
        if resumable(run, exc):
            leave_for_recovery(run, str(exc))
        else:
            fail_upload(run, snapshot, str(exc))
    except Exception as exc:
        logger.exception("upload run %s crashed", run.pk)
        fail_upload(run, snapshot, f"internal error ({type(exc).__name__}); see the worker log")
    run.refresh_from_db()
    return run


def _upload_all(
    run: Run, snapshot: Snapshot, progress: Callable[[Progress], None]
) -> dict[str, Any]:
    archive = local_path(snapshot.storage_key)
    sidecar = local_path(f"{snapshot.storage_key}.sha256")
    deep = bool(run.options.get("deep_check"))
    results: dict[str, Any] = {}
    for copy in OffsiteCopy.objects.filter(snapshot=snapshot, run=run).order_by("location"):
        if copy.state == OffsiteCopy.State.VERIFIED:
            results[copy.location] = {"state": copy.state, "skipped": "already verified"}
            continue
        results[copy.location] = _upload_copy(copy, snapshot, archive, sidecar, deep, progress)
    removed: list[str] = []
    if not keeps_local_copy(snapshot.storage_location):
        removed = _remove_local(snapshot)
    return {
        "backup_id": snapshot.backup_id, "app_id": snapshot.app_id,
        "storage_location": snapshot.storage_location, "copies": results,
        "local_removed": removed, "where": where(snapshot),
    }  # fmt: skip


def _upload_copy(
    copy: OffsiteCopy,
    snapshot: Snapshot,
    archive: Path,
    sidecar: Path,
    deep: bool,
    progress: Callable[[Progress], None],
) -> dict[str, Any]:
    backend = get_backend(copy.location)
    ledger = DjangoPartLedger(copy.pk)
    started = time.monotonic()
    phase = f"uploading to {copy.location}"
    progress(Progress(phase, 0, snapshot.size_bytes))

    def report(done: int, total: int) -> None:
        progress(Progress(phase, done, total))

    info = copy_file(backend, archive, copy.key, ledger, snapshot.sha256, report)
    copy_file(backend, sidecar, f"{copy.key}.sha256", None, None, None)
    if deep:
        progress(Progress(f"checking the copy on {copy.location}", 0, info.size))
        check_copy(backend, copy.key, snapshot.sha256)
    OffsiteCopy.objects.filter(pk=copy.pk).update(
        state=OffsiteCopy.State.VERIFIED, bytes_done=info.size, size_bytes=info.size,
        sha256=snapshot.sha256, verified_at=Now(), error="", upload_id="", marker="",
    )  # fmt: skip
    seconds = time.monotonic() - started
    return {
        "state": OffsiteCopy.State.VERIFIED, "key": copy.key, "size_bytes": info.size,
        "parts_resumed": ledger.resumed_parts, "parts_sent": ledger.recorded_parts,
        "deep_checked": deep, "seconds": round(seconds, 3),
        "mib_per_second": round(info.size / 1048576 / seconds, 1) if seconds > 0 else None,
    }  # fmt: skip


def local_path(key: str) -> Path:
    """Where LocalStorage keeps KEY (the upload reads parts at their offsets)."""
    validate_key(key)
    return Path(settings.BACKUP_ROOT) / key


def copy_file(
    backend: Storage,
    path: Path,
    key: str,
    ledger: DjangoPartLedger | None,
    sha256: str | None,
    progress: Callable[[int, int], None] | None,
) -> Any:
    """Copy the local file PATH to KEY on BACKEND: resumably through the S3
    backend's upload_file, else (a backend without it: memory, local) as one
    stream through its atomic writer, checked by reading it back."""
    if not path.is_file():
        raise ObjectNotFound(f"the local copy {path.name} is missing: nothing to upload")
    upload = getattr(backend, "upload_file", None)
    if upload is not None:
        return upload(path, key, ledger=ledger, sha256=sha256, progress=progress)
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as source, backend.open_writer(key) as sink:
        while block := source.read(_BLOCK):
            sink.write(block)
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
        info = sink.commit()
    if sha256 is not None and digest.hexdigest() != sha256:
        raise StorageError(f"{path.name} changed while it was being copied to {backend.name!r}")
    return info


def check_copy(backend: Storage, key: str, sha256: str) -> None:
    """A deep check: the object read back has the snapshot's SHA-256."""
    verify = getattr(backend, "verify", None)
    if verify is not None:
        verify(key, sha256, deep=True)
        return
    digest = hashlib.sha256()
    with backend.open(key) as stream:
        while block := stream.read(_BLOCK):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise StorageError(f"storage {backend.name!r}: {key} reads back with another SHA-256")


def _remove_local(snapshot: Snapshot) -> list[str]:
    """The `<s3>`-only snapshot's staged local files, now that every copy is verified."""
    pending = OffsiteCopy.objects.filter(snapshot=snapshot).exclude(
        state=OffsiteCopy.State.VERIFIED
    )
    if pending.exists():
        return []
    local = get_backend(LOCAL)
    removed = []
    for key in (f"{snapshot.storage_key}.sha256", snapshot.storage_key):
        try:
            local.delete(key)
            removed.append(key)
        except ObjectNotFound:
            continue
    return removed


# -- reading ---------------------------------------------------------------------


def follow_upload(
    snapshot: Snapshot, on_progress: Callable[[Progress], None], poll_seconds: float = 0.5
) -> Run | None:
    """For the command line: run SNAPSHOT's pending upload here (a worker
    that gets its message later finds it claimed), or, if a worker already
    has it, follow its row until it ends. None if it has no upload."""
    run = snapshot.runs.filter(operation=Run.Operation.UPLOAD).order_by("-created_at").first()
    if run is None:
        return None
    if run.state == Run.State.PENDING:
        run = run_upload(str(run.pk), on_progress=on_progress)
    while run.state in (Run.State.PENDING, Run.State.RUNNING):
        on_progress(Progress(run.phase or "uploading", run.bytes_done, run.bytes_total))
        time.sleep(poll_seconds)
        run.refresh_from_db()
    return run
