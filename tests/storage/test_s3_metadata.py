"""A streamed multipart write (S3Writer: the SHA-256 known only at the end)
leaves an object whose SHA-256 a HEAD reads, on both real servers: one
CopyObject onto itself up to the copy limit, a multipart copy above it
(moto; s3rver has no UploadPartCopy and copies in one request). A commit
that cannot set it (a server without CopyObject, a copy refused) fails,
saying why, and leaves no object behind."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from engine.errors import ChecksumMismatch, StorageError
from storage.s3 import S3Storage
from storage.s3_config import MIB, S3Config
from tests.s3_servers import S3Server
from tests.storage.conftest import TEST_PART_SIZE, s3_storage_on
from tests.storage.s3_helpers import stored_sha256

KEY = "app_1/backup_20260105_103000_3fa2c1.tar.zst"
SIZE = 2 * TEST_PART_SIZE + 4321  # three parts through the streaming writer


def stream(storage: S3Storage, data: bytes, key: str = KEY) -> None:
    with storage.open_writer(key) as sink:
        for offset in range(0, len(data), MIB):
            sink.write(data[offset : offset + MIB])


@pytest.mark.parametrize("checksums", ["when_required", "when_supported"])
def test_a_streamed_multipart_write_carries_its_sha256(s3_server: S3Server, checksums: str) -> None:
    storage = s3_storage_on(s3_server, request_checksum_calculation=checksums)
    data = os.urandom(SIZE)
    digest = hashlib.sha256(data).hexdigest()
    stream(storage, data)

    head = storage.head(KEY)
    assert head["Metadata"]["sha256"] == digest  # a HEAD reads it: no sidecar needed
    assert int(head["ContentLength"]) == SIZE
    assert not storage.exists(KEY + ".sha256")
    assert storage.verify(KEY, digest).size == SIZE  # quick: HEAD only
    assert stored_sha256(storage, KEY) == digest  # the copy kept the bytes
    with pytest.raises(ChecksumMismatch, match="expected"):
        storage.verify(KEY, "0" * 64)


def test_above_the_copy_limit_the_sha256_is_set_by_a_multipart_copy(
    s3_server: S3Server,
) -> None:
    # The limit lowered to S3's smallest part, so a 10 MiB object is "above 5 GiB".
    storage = s3_storage_on(s3_server, copy_max_size=TEST_PART_SIZE)
    data = os.urandom(SIZE)
    digest = hashlib.sha256(data).hexdigest()
    stream(storage, data)

    head = storage.head(KEY)
    assert head["Metadata"]["sha256"] == digest
    if s3_server.kind == "moto":
        # UploadPartCopy in parts of copy_max_size: a 3-part multipart ETag.
        assert str(head["ETag"]).strip('"').endswith("-3")
    assert stored_sha256(storage, KEY) == digest


class NoCopyClient:
    """The real client of a real server, but CopyObject and UploadPartCopy
    answer as a server without them would (none such is installable here,
    so this one refusal is simulated; every other request is real)."""

    def __init__(self, client: Any, code: str = "NotImplemented") -> None:
        self._client = client
        self._code = code

    def _refuse(self, **_: Any) -> None:
        raise ClientError({"Error": {"Code": self._code, "Message": "refused"}}, "CopyObject")

    copy_object = _refuse
    upload_part_copy = _refuse

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_server_that_cannot_copy_fails_the_commit_saying_why(s3_server: S3Server) -> None:
    real = s3_storage_on(s3_server)
    storage = S3Storage(real.config, client=NoCopyClient(real.client))
    with pytest.raises(StorageError, match="no CopyObject"):
        stream(storage, os.urandom(SIZE))
    assert not real.exists(KEY)
    # Small objects are one PUT with their metadata: no copy needed.
    stream(storage, b"small")
    assert storage.verify(KEY, hashlib.sha256(b"small").hexdigest()).size == 5


def test_a_commit_that_cannot_set_the_sha256_fails_and_leaves_no_object(
    s3_server: S3Server,
) -> None:
    real = s3_storage_on(s3_server)
    storage = S3Storage(real.config, client=NoCopyClient(real.client, code="AccessDenied"))
    with pytest.raises(StorageError, match=r"storage 's3'.*access denied") as caught:
        stream(storage, os.urandom(SIZE))
    assert real.config.secret_key not in str(caught.value)
    assert not real.exists(KEY)
    assert [info.key for info in real.list()] == []


def test_copy_max_size_is_bounded_by_s3s_limits() -> None:
    with pytest.raises(ValueError, match="copy_max_size"):
        S3Config(bucket="b", copy_max_size=MIB)
