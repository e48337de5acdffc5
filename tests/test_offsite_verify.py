"""Quick verify checks every copy of a snapshot, against both real S3
servers (moto and s3rver): the local copy by its bytes, the S3 copy by a
HEAD (size and the SHA-256 it carries), each reported by location; an S3
object removed or overwritten behind our back fails the verify naming s3,
a local copy gone fails it naming local even though S3 still holds one."""

from __future__ import annotations

import os
from typing import Any

import pytest

from engine.progress import Progress
from engine.verify import PROGRESS_EVERY
from snapshots.models import Run, Snapshot
from snapshots.services.offsite import request_upload, run_upload
from snapshots.services.snapshots import verify_now
from snapshots.services.verify import request_verify, run_verify
from tests.offsite_helpers import PART_MB, moto, s3_location, s3rver, stored_snapshot

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["moto", "s3_location", "s3rver"]
MIB = 1024 * 1024
DATA_SIZE = 2 * PART_MB * MIB + 777  # three parts: a multipart object


def uploaded(location: str) -> Snapshot:
    snapshot = stored_snapshot(os.urandom(DATA_SIZE), location=location)
    run = run_upload(str(request_upload(snapshot).pk))
    assert run.state == Run.State.COMPLETED, run.error
    return snapshot


def by_location(run: Run) -> dict[str, dict[str, Any]]:
    return {copy["location"]: copy for copy in run.result["copies"]}


def test_quick_verify_checks_and_reports_each_copy(s3_location: dict[str, Any]) -> None:
    snapshot = uploaded("local+s3")
    run = verify_now(snapshot)
    assert run.state == Run.State.COMPLETED, run.error
    copies = by_location(run)
    assert copies["local"] | {"size_bytes": 0} == {
        "location": "local", "checked": "read", "ok": True, "error": "", "size_bytes": 0,
    }  # fmt: skip
    assert copies["s3"] == {
        "location": "s3", "checked": "head", "state": "verified", "ok": True, "error": "",
        "size_bytes": DATA_SIZE,
    }  # fmt: skip
    assert run.result["read_from"] == "local" and run.result["valid"]


def test_s3_object_deleted_behind_its_back_fails_naming_s3(s3_location: dict[str, Any]) -> None:
    snapshot = uploaded("local+s3")
    s3_location["client"].delete_object(Bucket=s3_location["bucket"], Key=snapshot.storage_key)
    run = verify_now(snapshot)
    assert run.state == Run.State.FAILED
    assert "copy 's3': the archive is missing" in run.error
    assert by_location(run)["local"]["ok"] is True  # the local copy is still good
    assert run.result["errors"] == ["copy 's3': the archive is missing"]


def test_s3_object_overwritten_behind_its_back_fails_naming_s3(s3_location: dict[str, Any]) -> None:
    snapshot = uploaded("local+s3")
    s3_location["client"].put_object(
        Bucket=s3_location["bucket"], Key=snapshot.storage_key, Body=os.urandom(DATA_SIZE)
    )
    run = verify_now(snapshot)
    assert run.state == Run.State.FAILED
    assert run.error.startswith("copy 's3': ") and "no SHA-256" in run.error, run.error
    assert by_location(run)["s3"]["ok"] is False


def test_a_shorter_s3_object_with_the_right_metadata_fails_on_its_size(
    s3_location: dict[str, Any],
) -> None:
    snapshot = uploaded("local+s3")
    s3_location["client"].put_object(
        Bucket=s3_location["bucket"], Key=snapshot.storage_key, Body=b"short",
        Metadata={"sha256": snapshot.sha256},
    )  # fmt: skip
    run = verify_now(snapshot)
    assert run.state == Run.State.FAILED
    assert run.error == f"copy 's3': 5 bytes, expected {DATA_SIZE}"


def test_a_missing_local_copy_fails_naming_local_though_s3_has_one(
    s3_location: dict[str, Any], settings: Any
) -> None:
    snapshot = uploaded("local+s3")
    (settings.BACKUP_ROOT / snapshot.storage_key).unlink()
    run = verify_now(snapshot)
    assert run.state == Run.State.FAILED
    assert run.result["errors"] == ["copy 'local': the archive is missing"]
    copies = by_location(run)
    assert copies["s3"]["ok"] is True and copies["s3"]["checked"] == "read+head"
    assert run.result["read_from"] == "s3" and run.result["checksum_match"]


def test_s3_only_reads_the_s3_copy_and_checks_its_head(s3_location: dict[str, Any]) -> None:
    snapshot = uploaded("s3")
    run = verify_now(snapshot)
    assert run.state == Run.State.COMPLETED, run.error
    assert list(by_location(run)) == ["s3"]
    assert by_location(run)["s3"]["checked"] == "read+head"
    s3_location["client"].copy_object(
        Bucket=s3_location["bucket"], Key=snapshot.storage_key, MetadataDirective="REPLACE",
        CopySource={"Bucket": s3_location["bucket"], "Key": snapshot.storage_key},
        Metadata={"sha256": "0" * 64},
    )  # fmt: skip
    run = verify_now(snapshot)
    assert run.state == Run.State.FAILED and run.error.startswith("copy 's3': "), run.error


def test_a_copy_not_uploaded_yet_is_reported_and_fails_nothing(s3_location: dict[str, Any]) -> None:
    snapshot = stored_snapshot(os.urandom(1000), location="local+s3")
    request_upload(snapshot)  # pending: nothing on S3 yet
    run = verify_now(snapshot)
    assert run.state == Run.State.COMPLETED, run.error
    assert by_location(run)["s3"] == {
        "location": "s3", "checked": None, "state": "pending", "ok": None, "error": "",
    }  # fmt: skip


def test_a_local_only_snapshot_reports_no_copies(s3_location: dict[str, Any]) -> None:
    snapshot = stored_snapshot(os.urandom(1000), location="local")
    run = verify_now(snapshot)
    assert run.state == Run.State.COMPLETED, run.error
    assert "copies" not in run.result


def test_the_bytes_a_verify_downloads_reach_the_run_row_and_the_task_state(
    s3_location: dict[str, Any],
) -> None:
    """The engine reports every 64 MiB it read (engine.verify.PROGRESS_EVERY):
    an s3-only archive just past that, read from S3, shows in what the run's
    progress relay writes to the run row and hands the Celery task state
    (snapshots.tasks) or the CLI's bar."""
    size = PROGRESS_EVERY + 3 * MIB
    snapshot = stored_snapshot(os.urandom(size), location="s3")
    assert run_upload(str(request_upload(snapshot).pk)).state == Run.State.COMPLETED
    seen: list[Progress] = []
    run = run_verify(str(request_verify(snapshot, deep=False).pk), on_progress=seen.append)
    assert run.state == Run.State.COMPLETED, run.error
    assert run.result["read_from"] == "s3"
    # The relay writes each report to the run row and hands it to the sink.
    reports = [(p.bytes_done, p.bytes_total) for p in seen if p.phase == "verifying"]
    assert reports == [(PROGRESS_EVERY, size)]
    assert (run.phase, run.bytes_done, run.bytes_total) == ("done", size, size)
