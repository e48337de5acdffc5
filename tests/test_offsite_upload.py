"""Upload runs against a real S3 server (moto's, tests/s3_servers.py): the
archive and its sidecar copied with the snapshot's SHA-256 in the object's
metadata, the parts recorded as they are acknowledged, the local copy of an
`s3`-only snapshot removed once verified, reads falling back to S3, deletes
reaching every copy, and the sweeper wired into recovery."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from engine.progress import Progress
from snapshots.models import Run, Snapshot
from snapshots.models_offsite import OffsiteCopy, UploadPart
from snapshots.offsite_ledger import DjangoPartLedger
from snapshots.recovery import fail_stale_pending, recover_host
from snapshots.selectors_offsite import where
from snapshots.services import offsite as offsite_service
from snapshots.services.offsite import request_upload, run_upload
from snapshots.services.offsite_recovery import MAX_RESUMES
from snapshots.services.snapshots import delete_snapshot, verify_now
from snapshots.storage_locations import get_storage, storage_names
from tests.offsite_helpers import (
    PART_MB,
    SlowRelay,
    configure_s3,
    moto,
    offsite,
    s3_env,
    s3_object,
    stored_snapshot,
)

# transaction=True: the progress relay writes the run row on a thread (and connection) of its own.
pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["moto", "offsite"]  # fixtures
MIB = 1024 * 1024


def upload(snapshot: Snapshot, seen: list[Progress] | None = None) -> Run:
    run = request_upload(snapshot)
    return run_upload(str(run.pk), on_progress=seen.append if seen is not None else None)


def test_locations_named_by_the_environment(offsite: dict[str, Any]) -> None:
    assert storage_names() == ["local", "s3", "local+s3"]


def test_local_plus_s3_copies_archive_and_sidecar_with_its_sha256(
    offsite: dict[str, Any], settings: Any
) -> None:
    data = os.urandom(3 * PART_MB * MIB + 12345)  # 4 parts, the last one short
    snapshot = stored_snapshot(data, location="local+s3")
    seen: list[Progress] = []
    run = upload(snapshot, seen)
    assert run.state == Run.State.COMPLETED, run.error
    body, head = s3_object(offsite["client"], offsite["bucket"], snapshot.storage_key)
    assert body == data and head["Metadata"]["sha256"] == snapshot.sha256
    sidecar, _ = s3_object(offsite["client"], offsite["bucket"], f"{snapshot.storage_key}.sha256")
    assert sidecar.decode().split()[0] == snapshot.sha256
    copy = OffsiteCopy.objects.get(snapshot=snapshot)
    assert copy.state == OffsiteCopy.State.VERIFIED and copy.upload_id == ""
    assert copy.bytes_done == len(data) and copy.verified_at is not None
    assert not UploadPart.objects.filter(copy=copy).exists()  # forgotten once complete
    result = run.result["copies"]["s3"]
    assert result["parts_sent"] == 4 and result["parts_resumed"] == 0
    # The local copy stays; the snapshot says where both copies are.
    assert (settings.BACKUP_ROOT / snapshot.storage_key).read_bytes() == data
    assert [(c["location"], c["state"]) for c in where(snapshot)] == [
        ("local", "stored"), ("s3", "verified"),
    ]  # fmt: skip
    # Progress reached the run row and the caller, up to the whole size.
    assert run.bytes_done == len(data) and run.bytes_total == len(data)
    uploading = [p for p in seen if p.phase == "uploading to s3"]
    assert uploading and uploading[-1].bytes_done == len(data)


def test_parts_are_rows_as_they_are_acknowledged(offsite: dict[str, Any]) -> None:
    """The ledger the upload loop writes: what a resume reads back."""
    snapshot = stored_snapshot(b"x", location="local+s3")
    request_upload(snapshot)
    copy = OffsiteCopy.objects.get(snapshot=snapshot)
    ledger = DjangoPartLedger(copy.pk)
    from storage.s3_ledger import UploadState

    ledger.start(UploadState(copy.key, "up-1", 12 * MIB, 5 * MIB, "a" * 64, "m", 1.0))
    ledger.record("up-1", 1, 5 * MIB, "md5:" + "b" * 32, '"etag1"')
    ledger.record("up-1", 2, 5 * MIB, "md5:" + "c" * 32, '"etag2"')
    resumed = DjangoPartLedger(copy.pk)
    state = resumed.pending(copy.key)
    assert state is not None and state.upload_id == "up-1" and state.size == 12 * MIB
    parts = resumed.parts("up-1")
    assert sorted(parts) == [1, 2] and parts[2].etag == '"etag2"'
    assert parts[1].checksum == "md5:" + "b" * 32
    assert resumed.resumed_parts == 2
    assert OffsiteCopy.objects.get(pk=copy.pk).bytes_done == 10 * MIB
    resumed.forget("up-1")
    assert resumed.pending(copy.key) is None and not UploadPart.objects.exists()


def test_s3_only_keeps_no_local_copy_and_reads_from_s3(
    offsite: dict[str, Any], settings: Any
) -> None:
    data = os.urandom(2 * PART_MB * MIB)
    snapshot = stored_snapshot(data, location="s3")
    run = upload(snapshot)
    assert run.state == Run.State.COMPLETED, run.error
    assert run.result["local_removed"] == [f"{snapshot.storage_key}.sha256", snapshot.storage_key]
    assert not (settings.BACKUP_ROOT / snapshot.storage_key).exists()
    assert [c["location"] for c in where(snapshot)] == ["s3"]
    storage = get_storage("s3")
    assert storage.stat(snapshot.storage_key).size == len(data)
    with storage.open(snapshot.storage_key) as stream:
        stream.seek(PART_MB * MIB - 3)
        assert stream.read(10) == data[PART_MB * MIB - 3 : PART_MB * MIB + 7]
    # Quick verification: the stored bytes' SHA-256, read from S3 alone.
    verified = verify_now(snapshot)
    assert verified.state == Run.State.COMPLETED, verified.error
    assert verified.result["checksum_match"] and verified.result["sidecar_match"]


def test_delete_removes_every_copy(offsite: dict[str, Any], settings: Any) -> None:
    data = os.urandom(1000)
    snapshot = stored_snapshot(data, location="local+s3")
    assert upload(snapshot).state == Run.State.COMPLETED
    deleted = delete_snapshot(snapshot)
    assert sorted(deleted.removed) == [snapshot.storage_key, f"{snapshot.storage_key}.sha256"]
    listed = offsite["client"].list_objects_v2(Bucket=offsite["bucket"]).get("Contents", [])
    assert listed == [] and not (settings.BACKUP_ROOT / snapshot.storage_key).exists()
    assert not OffsiteCopy.objects.exists()


def test_delete_aborts_an_open_multipart_upload(offsite: dict[str, Any]) -> None:
    snapshot = stored_snapshot(os.urandom(1000), location="local+s3")
    run = request_upload(snapshot)
    Run.objects.filter(pk=run.pk).update(state=Run.State.FAILED)  # died, given up
    client, bucket = offsite["client"], offsite["bucket"]
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=snapshot.storage_key)["UploadId"]
    OffsiteCopy.objects.filter(snapshot=snapshot).update(upload_id=upload_id)
    delete_snapshot(snapshot)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_recovery_sweeps_orphaned_multipart_uploads(
    offsite: dict[str, Any], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only what is older than BACKUP_S3_ORPHAN_SECONDS goes; 0 here, so the
    orphan made now qualifies (the real default is a day)."""
    settings.BACKUP_S3_ORPHAN_SECONDS = 0
    settings.BACKUP_STALE_SECONDS = 0
    monkeypatch.setattr("snapshots.offsite_ledger._last_sweep", {})
    client, bucket = offsite["client"], offsite["bucket"]
    client.create_multipart_upload(Bucket=bucket, Key="gone-app/backup_x.tar.zst")
    swept = recover_host()["swept_partials"]
    assert any("gone-app/backup_x.tar.zst" in item for item in swept), swept
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_deep_check_on_request_reads_the_object_back(
    offsite: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(PART_MB * MIB + 1)
    snapshot = stored_snapshot(data, location="local+s3")
    read_back: list[str] = []
    original = offsite_service.check_copy

    def spy(backend: Any, key: str, sha256: str) -> None:
        read_back.append(key)
        original(backend, key, sha256)

    monkeypatch.setattr(offsite_service, "check_copy", spy)  # a spy: the real check runs
    run = run_upload(str(request_upload(snapshot, deep_check=True).pk))
    assert run.state == Run.State.COMPLETED, run.error
    assert read_back == [snapshot.storage_key] and run.result["copies"]["s3"]["deep_checked"]
    assert hashlib.sha256(data).hexdigest() == snapshot.sha256


def test_network_cut_mid_upload_is_resumed_sending_only_the_rest(
    offsite: dict[str, Any], settings: Any
) -> None:
    """The network goes away after two parts and stays away past the
    backend's retries: the run is left for recovery (not failed), which
    queues it again; run once the network is back, it sends only the rest."""
    settings.BACKUP_LEASE_SECONDS = 4
    server = offsite["server"]
    relay = SlowRelay(server.port, rate=50 * MIB, cut_after=int(2.5 * PART_MB * MIB))
    configure_s3(settings, s3_env(server, offsite["bucket"], endpoint=relay.url)
                 | {"BACKUP_S3_CONCURRENCY": "1"})  # fmt: skip
    data = os.urandom(5 * PART_MB * MIB)
    snapshot = stored_snapshot(data, location="local+s3")
    run = upload(snapshot)
    relay.close()
    assert run.state == Run.State.RUNNING and "storage 's3'" in run.error, run.error
    copy = OffsiteCopy.objects.get(snapshot=snapshot)
    assert copy.state == OffsiteCopy.State.UPLOADING
    kept = UploadPart.objects.filter(copy=copy).count()
    assert 1 <= kept < 5

    assert recover_host()["recovered_runs"][str(run.pk)] == {"resumed": True, "resumes": 1}
    assert Run.objects.get(pk=run.pk).state == Run.State.PENDING
    configure_s3(settings, offsite["env"])  # the network is back
    run = run_upload(str(run.pk))
    assert run.state == Run.State.COMPLETED, run.error
    result = run.result["copies"]["s3"]
    assert result["parts_resumed"] == kept and result["parts_sent"] <= 5 - kept
    body, _ = s3_object(offsite["client"], offsite["bucket"], snapshot.storage_key)
    assert body == data


def test_an_upload_interrupted_too_often_is_failed_and_aborted(offsite: dict[str, Any]) -> None:
    snapshot = stored_snapshot(os.urandom(1000), location="local+s3")
    run = request_upload(snapshot)
    client, bucket = offsite["client"], offsite["bucket"]
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=snapshot.storage_key)["UploadId"]
    OffsiteCopy.objects.filter(snapshot=snapshot).update(
        upload_id=upload_id, state=OffsiteCopy.State.UPLOADING
    )
    Run.objects.filter(pk=run.pk).update(  # dead (no heartbeat), resumed 5 times already
        state=Run.State.RUNNING, result={"resumes": MAX_RESUMES}, heartbeat_at=None
    )
    outcome = recover_host()["recovered_runs"][str(run.pk)]
    assert outcome == {"resumed": False, "failed": True, "resumes": MAX_RESUMES}
    run.refresh_from_db()
    assert run.state == Run.State.FAILED and "interrupted 5 times" in run.error
    assert OffsiteCopy.objects.get(snapshot=snapshot).state == OffsiteCopy.State.FAILED
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    snapshot.refresh_from_db()
    assert snapshot.status == Snapshot.Status.COMPLETED  # local+s3: the local copy stands


def test_a_failed_copy_is_asked_for_again_from_the_command_line(
    offsite: dict[str, Any], settings: Any
) -> None:
    """`backup upload` after the operator fixed what was wrong (here: the
    bucket did not exist yet)."""
    bucket = "later-" + offsite["bucket"]
    configure_s3(settings, offsite["env"] | {"BACKUP_S3_BUCKET": bucket})
    data = os.urandom(PART_MB * MIB + 99)
    snapshot = stored_snapshot(data, location="local+s3")
    assert upload(snapshot).state == Run.State.FAILED
    assert OffsiteCopy.objects.get(snapshot=snapshot).state == OffsiteCopy.State.FAILED
    offsite["client"].create_bucket(Bucket=bucket)
    call_command("backup", "upload", snapshot.backup_id)
    copy = OffsiteCopy.objects.get(snapshot=snapshot)
    assert copy.state == OffsiteCopy.State.VERIFIED and copy.error == ""
    body, _ = s3_object(offsite["client"], bucket, snapshot.storage_key)
    assert body == data
    with pytest.raises(CommandError, match="stored locally only"):
        call_command("backup", "upload", stored_snapshot(b"x", location="local").backup_id)


@pytest.mark.parametrize("location", ["local+s3", "s3"])
def test_an_upload_never_picked_up_fails_its_copies(
    offsite: dict[str, Any], settings: Any, location: str
) -> None:
    snapshot = stored_snapshot(os.urandom(100), location=location)
    run = request_upload(snapshot)
    Run.objects.filter(pk=run.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.BACKUP_PENDING_TIMEOUT_SECONDS + 5)
    )
    assert fail_stale_pending() == [str(run.pk)]
    run.refresh_from_db()
    snapshot.refresh_from_db()
    assert run.state == Run.State.FAILED and "never started" in run.error
    copy = OffsiteCopy.objects.get(snapshot=snapshot)
    assert copy.state == OffsiteCopy.State.FAILED and "never started" in copy.error
    expected = Snapshot.Status.COMPLETED if location == "local+s3" else Snapshot.Status.FAILED
    assert snapshot.status == expected
    assert (settings.BACKUP_ROOT / snapshot.storage_key).exists() is (location == "local+s3")
