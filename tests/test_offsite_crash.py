"""kill -9 of a real Celery worker in the middle of an upload to a real S3
server (moto's, behind a bandwidth-limited relay so the upload lasts long
enough to be cut), then a new worker: its start-up recovery finds the dead
upload run, puts it back on the host's queue, and the upload completes
sending only the parts that were not acknowledged yet. On the way, the
bytes uploaded reach the run row and the Celery task state."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from django_celery_results.models import TaskResult

from snapshots.models import Run
from snapshots.models_offsite import OffsiteCopy, UploadPart
from snapshots.services.offsite import request_upload, send_upload
from tests.offsite_helpers import (
    PART_MB,
    SlowRelay,
    moto,
    offsite,
    s3_env,
    s3_object,
    start_worker,
    stored_snapshot,
    wait_for,
)

pytestmark = [pytest.mark.celery, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
__all__ = ["moto", "offsite"]
LEASE_SECONDS = 4
PARTS = 8
MIB = 1024 * 1024


def _progress_meta(run_id: str) -> dict[str, Any] | None:
    row = TaskResult.objects.filter(task_id=run_id, status="PROGRESS").first()
    if row is None:
        return None
    import json

    meta = json.loads(row.result or "{}")
    return meta if meta.get("bytes_done") else None


def test_worker_killed_mid_upload_then_a_new_worker_sends_only_the_missing_parts(
    offsite: dict[str, Any], settings: Any, celery_queue: str, tmp_path: Path
) -> None:
    settings.BACKUP_LEASE_SECONDS = LEASE_SECONDS
    settings.BACKUP_TASK_QUEUE = celery_queue
    data = os.urandom(PARTS * PART_MB * MIB)
    snapshot = stored_snapshot(data, location="local+s3")
    server = offsite["server"]
    relay = SlowRelay(server.port, rate=4 * MIB)  # about 1.3 s a part
    # One part in flight, so the parts go one after the other.
    slow_env = s3_env(server, offsite["bucket"], endpoint=relay.url) | {
        "BACKUP_S3_CONCURRENCY": "1"
    }
    log = tmp_path / "worker.log"
    workers = []
    try:
        workers.append(start_worker(celery_queue, log, slow_env))
        run = request_upload(snapshot)
        send_upload(run, snapshot)
        copy = OffsiteCopy.objects.get(snapshot=snapshot)
        wait_for(
            "two acknowledged parts", lambda: UploadPart.objects.filter(copy=copy).count() >= 2
        )
        meta = wait_for("upload progress in the task state", lambda: _progress_meta(str(run.pk)))
        assert meta["phase"] == "uploading to s3" and meta["bytes_total"] == len(data)
        workers[0].kill()  # SIGKILL: no handler, no finally
        workers[0].wait(timeout=10)
        killed_at = time.monotonic()

        run.refresh_from_db()
        assert run.state == Run.State.RUNNING and 0 < run.bytes_done < len(data)
        recorded = {p.number: p for p in UploadPart.objects.filter(copy=copy)}
        assert 2 <= len(recorded) < PARTS
        assert all(
            p.size == PART_MB * MIB and p.checksum.startswith("md5:") and p.etag
            for p in recorded.values()
        )
        copy.refresh_from_db()
        assert copy.state == OffsiteCopy.State.UPLOADING and copy.upload_id

        time.sleep(LEASE_SECONDS + 1)  # the heartbeat is a lease old: the run is dead
        fast_env = s3_env(server, offsite["bucket"])
        workers.append(start_worker(celery_queue, log, fast_env))
        wait_for("the resumed upload", lambda: Run.objects.get(pk=run.pk).state != "running"
                 and Run.objects.get(pk=run.pk).state != "pending", timeout=120)  # fmt: skip
        took = time.monotonic() - killed_at
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=20)
        relay.close()

    run.refresh_from_db()
    assert run.state == Run.State.COMPLETED, f"{run.error}\n{log.read_text()[-3000:]}"
    result = run.result["copies"]["s3"]
    assert run.result["resumes"] == 1
    assert result["parts_resumed"] >= len(recorded)
    # Only what was not acknowledged went again (a part the server took just
    # before the kill is found by ListParts and checked, not sent again).
    assert result["parts_sent"] <= PARTS - len(recorded)
    body, head = s3_object(offsite["client"], offsite["bucket"], snapshot.storage_key)
    assert body == data and head["Metadata"]["sha256"] == snapshot.sha256
    assert not UploadPart.objects.filter(copy=copy).exists()
    assert (
        offsite["client"].list_multipart_uploads(Bucket=offsite["bucket"]).get("Uploads", []) == []
    )
    print(f"\nkill -9 mid-upload: {len(recorded)}/{PARTS} kept, done {took:.1f} s after")
