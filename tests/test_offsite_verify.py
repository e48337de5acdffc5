"""Quick verify checks every copy of a snapshot, against both real S3
servers (moto and s3rver): the local copy by its bytes, the S3 copy by a
HEAD (size and the SHA-256 it carries), each reported by location; an S3
object removed or overwritten behind our back fails the verify naming s3,
a local copy gone fails it naming local even though S3 still holds one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from snapshots.models import Run, Snapshot
from snapshots.services.offsite import request_upload, run_upload
from snapshots.services.snapshots import verify_now
from tests.offsite_helpers import PART_MB, configure_s3, moto, s3_env, stored_snapshot
from tests.s3_servers import S3Server, s3rver_server

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["moto"]
MIB = 1024 * 1024
DATA_SIZE = 2 * PART_MB * MIB + 777  # three parts: a multipart object


@pytest.fixture(scope="session")
def s3rver() -> Iterator[S3Server]:
    with s3rver_server() as server:
        yield server


@pytest.fixture(params=["moto", "s3rver"])
def server(request: pytest.FixtureRequest, settings: Any, tmp_path: Path) -> dict[str, Any]:
    """A fresh bucket on each real server in turn as the `s3` location."""
    s3 = request.getfixturevalue(request.param)
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    bucket = s3.new_bucket()
    configure_s3(settings, s3_env(s3, bucket))
    return {"client": s3.client(), "bucket": bucket}


def uploaded(location: str) -> Snapshot:
    snapshot = stored_snapshot(os.urandom(DATA_SIZE), location=location)
    run = run_upload(str(request_upload(snapshot).pk))
    assert run.state == Run.State.COMPLETED, run.error
    return snapshot


def by_location(run: Run) -> dict[str, dict[str, Any]]:
    return {copy["location"]: copy for copy in run.result["copies"]}


def test_quick_verify_checks_and_reports_each_copy(server: dict[str, Any]) -> None:
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


def test_s3_object_deleted_behind_its_back_fails_naming_s3(server: dict[str, Any]) -> None:
    snapshot = uploaded("local+s3")
    server["client"].delete_object(Bucket=server["bucket"], Key=snapshot.storage_key)
    run = verify_now(snapshot)
    assert run.state == Run.State.FAILED
    assert "copy 's3': the archive is missing" in run.error
    assert by_location(run)["local"]["ok"] is True  # the local copy is still good
    assert run.result["errors"] == ["copy 's3': the archive is missing"]


def test_s3_object_overwritten_behind_its_back_fails_naming_s3(server: dict[str, Any]) -> None:
    snapshot = uploaded("local+s3")
    server["client"].put_object(
        Bucket=server["bucket"], Key=snapshot.storage_key, Body=os.urandom(DATA_SIZE)
    )
    run = verify_now(snapshot)
    assert run.state == Run.State.FAILED
    assert run.error.startswith("copy 's3': ") and "no SHA-256" in run.error, run.error
    assert by_location(run)["s3"]["ok"] is False


def test_a_shorter_s3_object_with_the_right_metadata_fails_on_its_size(
    server: dict[str, Any],
) -> None:
    snapshot = uploaded("local+s3")
    server["client"].put_object(
        Bucket=server["bucket"], Key=snapshot.storage_key, Body=b"short",
        Metadata={"sha256": snapshot.sha256},
    )  # fmt: skip
    run = verify_now(snapshot)
    assert run.state == Run.State.FAILED
    assert run.error == f"copy 's3': 5 bytes, expected {DATA_SIZE}"


def test_a_missing_local_copy_fails_naming_local_though_s3_has_one(
    server: dict[str, Any], settings: Any
) -> None:
    snapshot = uploaded("local+s3")
    (settings.BACKUP_ROOT / snapshot.storage_key).unlink()
    run = verify_now(snapshot)
    assert run.state == Run.State.FAILED
    assert run.result["errors"] == ["copy 'local': the archive is missing"]
    copies = by_location(run)
    assert copies["s3"]["ok"] is True and copies["s3"]["checked"] == "read+head"
    assert run.result["read_from"] == "s3" and run.result["checksum_match"]


def test_s3_only_reads_the_s3_copy_and_checks_its_head(server: dict[str, Any]) -> None:
    snapshot = uploaded("s3")
    run = verify_now(snapshot)
    assert run.state == Run.State.COMPLETED, run.error
    assert list(by_location(run)) == ["s3"]
    assert by_location(run)["s3"]["checked"] == "read+head"
    server["client"].copy_object(
        Bucket=server["bucket"], Key=snapshot.storage_key, MetadataDirective="REPLACE",
        CopySource={"Bucket": server["bucket"], "Key": snapshot.storage_key},
        Metadata={"sha256": "0" * 64},
    )  # fmt: skip
    run = verify_now(snapshot)
    assert run.state == Run.State.FAILED and run.error.startswith("copy 's3': "), run.error


def test_a_copy_not_uploaded_yet_is_reported_and_fails_nothing(server: dict[str, Any]) -> None:
    snapshot = stored_snapshot(os.urandom(1000), location="local+s3")
    request_upload(snapshot)  # pending: nothing on S3 yet
    run = verify_now(snapshot)
    assert run.state == Run.State.COMPLETED, run.error
    assert by_location(run)["s3"] == {
        "location": "s3", "checked": None, "state": "pending", "ok": None, "error": "",
    }  # fmt: skip


def test_a_local_only_snapshot_reports_no_copies(server: dict[str, Any]) -> None:
    snapshot = stored_snapshot(os.urandom(1000), location="local")
    run = verify_now(snapshot)
    assert run.state == Run.State.COMPLETED, run.error
    assert "copies" not in run.result
