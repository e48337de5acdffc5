"""The PartLedger of storage.s3_ledger kept in the database: the open
multipart upload on the OffsiteCopy row, one UploadPart row per part the
server acknowledged, written at once (autocommit: a kill -9 right after
loses nothing that the server holds for us).

The upload loop calls it from the run's own thread only (storage.s3_upload
says so), so the rows are written by the thread that owns the run."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import transaction
from django.db.models import Sum

from engine.errors import EngineError
from snapshots.models_offsite import OffsiteCopy, UploadPart
from storage.s3_ledger import PartRecord, UploadState

logger = logging.getLogger(__name__)


class DjangoPartLedger:
    """The ledger of one OffsiteCopy (one key at one location)."""

    def __init__(self, copy_id: int) -> None:
        self.copy_id = copy_id
        self.resumed_parts = 0  # parts already on the server when this run found the upload
        self.recorded_parts = 0  # parts this run recorded (sent, or found sent)

    def start(self, state: UploadState) -> None:
        with transaction.atomic():
            UploadPart.objects.filter(copy_id=self.copy_id).delete()
            OffsiteCopy.objects.filter(pk=self.copy_id).update(
                state=OffsiteCopy.State.UPLOADING, upload_id=state.upload_id,
                marker=state.marker, part_size=state.part_size, size_bytes=state.size,
                sha256=state.sha256, upload_started=state.started, bytes_done=0,
            )  # fmt: skip

    def pending(self, key: str) -> UploadState | None:
        copy = OffsiteCopy.objects.filter(pk=self.copy_id, key=key).exclude(upload_id="").first()
        if copy is None or copy.part_size is None or copy.size_bytes is None:
            return None
        self.resumed_parts = UploadPart.objects.filter(
            copy_id=self.copy_id, upload_id=copy.upload_id
        ).count()
        return UploadState(
            key=copy.key, upload_id=copy.upload_id, size=copy.size_bytes,
            part_size=copy.part_size, sha256=copy.sha256, marker=copy.marker,
            started=copy.upload_started or 0.0,
        )  # fmt: skip

    def record(self, upload_id: str, part_number: int, size: int, checksum: str, etag: str) -> None:
        UploadPart.objects.update_or_create(
            copy_id=self.copy_id, number=part_number,
            defaults={"upload_id": upload_id, "size": size, "checksum": checksum, "etag": etag},
        )  # fmt: skip
        self.recorded_parts += 1
        done = UploadPart.objects.filter(copy_id=self.copy_id, upload_id=upload_id).aggregate(
            total=Sum("size")
        )["total"]
        OffsiteCopy.objects.filter(pk=self.copy_id).update(bytes_done=done or 0)

    def parts(self, upload_id: str) -> dict[int, PartRecord]:
        rows = UploadPart.objects.filter(copy_id=self.copy_id, upload_id=upload_id)
        return {r.number: PartRecord(r.number, r.size, r.checksum, r.etag) for r in rows}

    def forget(self, upload_id: str) -> None:
        with transaction.atomic():
            UploadPart.objects.filter(copy_id=self.copy_id, upload_id=upload_id).delete()
            OffsiteCopy.objects.filter(pk=self.copy_id, upload_id=upload_id).update(
                upload_id="", marker=""
            )


# Orphans are a day old before they go: looking for them on every recovery
# round (a minute) would only cost requests. Per process and location.
SWEEP_EVERY_SECONDS = 3600.0
_last_sweep: dict[str, float] = {}


def sweep_orphans(backend: Any, older_than_seconds: float) -> list[str]:
    """Abort BACKEND's dead writes and orphaned multipart uploads older than
    OLDER_THAN_SECONDS (storage.s3.S3Storage.sweep_partials: by their
    markers, then by ListMultipartUploads where the server has it), at most
    every SWEEP_EVERY_SECONDS. An upload a dead run's recovery resumes
    within that age is left alone; one older is gone and its resume starts
    over. Never raises: an unreachable bucket must not stop recovery."""
    now = time.monotonic()
    last = _last_sweep.get(backend.name)
    if last is not None and now - last < SWEEP_EVERY_SECONDS:
        return []
    _last_sweep[backend.name] = now
    try:
        removed: list[str] = backend.sweep_partials(older_than_seconds)
    except EngineError as exc:
        logger.warning("sweeping orphaned uploads of %s failed: %s", backend.name, exc)
        return []
    if removed:
        logger.info("%s: swept %d orphaned uploads", backend.name, len(removed))
    return removed
