"""When an upload run cannot go on: resumable failures (a signal, a network
cut in the middle, a dead worker) leave the run for this host's recovery,
which puts it back on the queue to resume where it stopped; the others fail
the copies, abort their multipart uploads where the server still answers,
and fail an `<s3>`-only snapshot (see snapshots.services.offsite)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone

from engine.errors import EngineError, ObjectNotFound
from snapshots.db_time import db_ago
from snapshots.locks import lease_seconds
from snapshots.models import Run, Snapshot
from snapshots.models_offsite import OffsiteCopy
from snapshots.offsite_ledger import DjangoPartLedger
from snapshots.runs import fail_run
from snapshots.selectors_offsite import where
from snapshots.storage_locations import LOCAL, get_backend, keeps_local_copy

logger = logging.getLogger(__name__)
MAX_RESUMES = 5  # resumes of one upload run (dead worker, network cut) before it is failed


def leave_for_recovery(run: Run, reason: str) -> None:
    """Stopped by a signal: the upload is resumable, so the run stays running
    and is marked dead at once; this host's recovery resumes it."""
    Run.objects.filter(pk=run.pk, state=Run.State.RUNNING).update(
        error=f"{reason}; this host's recovery resumes the upload",
        phase="awaiting resume", heartbeat_at=db_ago(lease_seconds() + 1),
    )  # fmt: skip


def resumable(run: Run, exc: EngineError) -> bool:
    """A network failure that outlasted the backend's retries in the middle
    of an upload: worth resuming later (recovery's next round, about a
    minute on), a bounded number of times. A failure before any upload was
    open (wrong credentials, a missing bucket, an unreachable endpoint) is
    not: it fails at once, with its reason."""
    from storage.s3_config import is_transient

    cause = exc.__cause__
    started = OffsiteCopy.objects.filter(run=run).exclude(upload_id="").exists()
    resumes = int((run.result or {}).get("resumes", 0))
    return cause is not None and is_transient(cause) and started and resumes < MAX_RESUMES


def fail_upload(run: Run, snapshot: Snapshot | None, error: str) -> None:
    """The copies not verified are failed (their multipart uploads aborted
    where the server still answers); an `<s3>`-only snapshot fails with them."""
    aborted = abort_uploads(run.snapshot_id, only_run=run) if snapshot is not None else []
    OffsiteCopy.objects.filter(run=run).exclude(state=OffsiteCopy.State.VERIFIED).update(
        state=OffsiteCopy.State.FAILED, error=error
    )
    result: dict[str, Any] = {"aborted_uploads": aborted}
    if snapshot is not None:
        result |= {"backup_id": snapshot.backup_id, "app_id": snapshot.app_id}
        if not keeps_local_copy(snapshot.storage_location):
            result["snapshot_failed"] = True
            fail_snapshot(snapshot, error)
        result["where"] = where(snapshot)
    fail_run(run, f"off-site upload failed: {error}", result)
    logger.warning("upload run %s of %s failed: %s", run.pk, run.app_id, error)


def fail_snapshot(snapshot: Snapshot, error: str) -> None:
    """An `<s3>`-only snapshot whose copy failed: failed, and like any
    failed backup it keeps no file (it was to have no local copy)."""
    removed = []
    storage = get_backend(LOCAL)
    for key in (f"{snapshot.storage_key}.sha256", snapshot.storage_key):
        try:
            storage.delete(key)
            removed.append(key)
        except ObjectNotFound:
            continue
        except EngineError as exc:
            logger.error("removing %s of failed %s: %s", key, snapshot.backup_id, exc)
    note = f"; the staged local archive was removed ({', '.join(removed)})" if removed else ""
    Snapshot.objects.filter(pk=snapshot.pk).update(
        status=Snapshot.Status.FAILED,
        error=f"its off-site copy could not be stored: {error}{note}",
        finished_at=timezone.now(),
    )
    snapshot.refresh_from_db()


def abort_uploads(snapshot_id: int | None, only_run: Run | None = None) -> list[str]:
    """Abort the open multipart uploads of SNAPSHOT_ID's copies (a run that
    can no longer resume, a deleted snapshot). Best effort: an upload the
    server cannot be asked about now is left to the sweeper (a day)."""
    rows = OffsiteCopy.objects.filter(snapshot_id=snapshot_id).exclude(upload_id="")
    if only_run is not None:
        rows = rows.filter(run=only_run)
    aborted = []
    for copy in rows:
        try:
            backend = get_backend(copy.location)
            drop = getattr(backend, "drop_upload", None)
            if drop is not None:
                drop(copy.marker or None, copy.key, copy.upload_id)
            DjangoPartLedger(copy.pk).forget(copy.upload_id)
            aborted.append(f"{copy.location}:{copy.key}")
        except Exception as exc:
            logger.warning(
                "could not abort the upload of %s to %s (%s); the sweeper will",
                copy.key, copy.location, type(exc).__name__,
            )  # fmt: skip
    return aborted


def resume_dead_upload(run: Run) -> dict[str, Any] | None:
    """Recovery's answer to a dead upload run (kill -9, a worker restart):
    it goes back to pending and to this host's queue, to resume where it
    stopped; after MAX_RESUMES it is failed and its uploads aborted. None
    if another recovery took it first."""
    from snapshots.recovery import _silent

    resumes = int((run.result or {}).get("resumes", 0)) + 1
    if resumes > MAX_RESUMES:
        claimed = Run.objects.filter(_silent(), pk=run.pk, state=Run.State.RUNNING).update(
            heartbeat_at=Now()
        )
        if not claimed:
            return None
        run.refresh_from_db()
        why = f"the upload was interrupted {MAX_RESUMES} times (worker deaths, network failures)"
        fail_upload(run, run.snapshot, f"{why}; given up")
        return {"resumed": False, "failed": True, "resumes": resumes - 1}
    claimed = Run.objects.filter(_silent(), pk=run.pk, state=Run.State.RUNNING).update(
        state=Run.State.PENDING, worker="", phase="resuming", heartbeat_at=None,
        result={**(run.result or {}), "resumes": resumes},
    )  # fmt: skip
    if not claimed:
        return None
    run.refresh_from_db()
    if run.snapshot is not None:
        from snapshots.services.offsite import send_upload

        transaction.on_commit(lambda: send_upload(run, run.snapshot))  # type: ignore[arg-type]
    logger.warning("upload run %s: its worker died; resuming it (%d)", run.pk, resumes)
    return {"resumed": True, "resumes": resumes}
