"""The sweeper: dead writes (their marker not refreshed within the threshold)
lose their multipart upload and marker on every server; orphaned multipart
uploads without a marker are aborted where the server lists them (moto; s3rver
has no ListMultipartUploads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import StorageError
from storage.s3_ledger import MemoryLedger
from tests.s3_servers import S3Server
from tests.storage.conftest import TEST_PART_SIZE, s3_storage_on
from tests.storage.s3_helpers import random_file
from tests.tcp_fault_proxy import FaultProxy, Rule

KEY = "app_1/backup.tar.zst"


def _uploads(storage: object) -> list[str]:
    page = storage.client.list_multipart_uploads(Bucket=storage.config.bucket)  # type: ignore[attr-defined]
    return [u["UploadId"] for u in page.get("Uploads", [])]


def test_orphaned_multipart_uploads_older_than_the_threshold_are_aborted(
    s3_moto: S3Server,
) -> None:
    storage = s3_storage_on(s3_moto, prefix="backups/")
    orphan = storage.client.create_multipart_upload(
        Bucket=storage.config.bucket, Key="backups/app_1/crashed.tar.zst"
    )["UploadId"]
    outside = storage.client.create_multipart_upload(
        Bucket=storage.config.bucket, Key="elsewhere/not-ours"
    )["UploadId"]

    # moto reports every upload as initiated on 2010-11-10 (a fixed value in
    # its ListMultipartUploads answer), so the threshold that keeps it here is
    # one that reaches back before that date.
    assert storage.sweep_partials(40 * 365 * 24 * 3600) == []
    assert orphan in _uploads(storage)
    removed = storage.sweep_partials(0)

    assert removed == [f"app_1/crashed.tar.zst (upload {orphan})"]
    assert _uploads(storage) == [outside]  # outside the location's prefix: not ours


def test_a_live_writers_upload_is_kept(s3_moto: S3Server) -> None:
    storage = s3_storage_on(s3_moto)
    writer = storage.open_writer(KEY)
    writer.write(b"x" * (TEST_PART_SIZE + 1))  # one part sent: the upload exists
    (upload_id,) = _uploads(storage)
    assert storage.sweep_multipart_uploads(0, keep={upload_id}) == []
    assert storage.sweep_partials(3600) == []
    writer.commit()
    assert storage.stat(KEY).size == TEST_PART_SIZE + 1
    assert _uploads(storage) == []


def test_an_interrupted_upload_is_swept_with_its_marker(
    s3_server: S3Server, tmp_path: Path
) -> None:
    source = tmp_path / "archive"
    random_file(source, 3 * TEST_PART_SIZE)
    with FaultProxy(s3_server.port) as proxy:
        storage = s3_storage_on(
            s3_server, endpoint_url=proxy.endpoint_url, max_attempts=1, part_attempts=1
        )
        proxy.add_rule(Rule("partNumber=2", "reset", times=10))
        with pytest.raises(StorageError):
            storage.upload_file(source, KEY, ledger=MemoryLedger())

        assert storage.sweep_partials(3600) == []
        removed = storage.sweep_partials(0)
        assert len(removed) == 1 and removed[0].startswith("app_1/.partial-")
        assert storage.sweep_partials(0) == []
        if s3_server.lists_parts:
            assert _uploads(storage) == []
        assert list(storage.list()) == []
