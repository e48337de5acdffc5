"""A location that is wrong: bad credentials (s3rver checks the access key id;
with SigV4 it does not verify signatures, so a wrong secret alone passes), a bucket
that does not exist, an endpoint nobody listens on. Each gives a clear
StorageError naming the location and the bucket, and never the secret key:
not in the message, not in the log (botocore's DEBUG log included)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.errors import ObjectNotFound, StorageError
from storage.s3 import S3Storage
from storage.s3_config import S3Config
from tests.s3_servers import S3Server, free_port
from tests.storage.conftest import s3_storage_on
from tests.storage.s3_helpers import random_file

SECRET = "wR0ng-s3cret-Key-7f3a9c"
KEY = "app_1/backup.tar.zst"


def _operations(storage: S3Storage, tmp_path: Path) -> dict[str, Callable[[], object]]:
    source = tmp_path / "archive"
    random_file(source, 1000)
    return {
        "stat": lambda: storage.stat(KEY),
        "open": lambda: storage.open(KEY),
        "list": lambda: list(storage.list("app_1/")),
        "open_writer": lambda: storage.open_writer(KEY),
        "upload_file": lambda: storage.upload_file(source, KEY),
        "delete": lambda: storage.delete(KEY),
        "sweep_partials": lambda: storage.sweep_partials(0),
    }


def _assert_clear(
    caught: pytest.ExceptionInfo[StorageError],
    storage: S3Storage,
    caplog: pytest.LogCaptureFixture,
    reason: str,
) -> None:
    message = str(caught.value)
    assert not isinstance(caught.value, ObjectNotFound), message
    assert reason in message
    assert repr(storage.name) in message and repr(storage.config.bucket) in message
    assert SECRET not in message
    assert SECRET not in repr(caught.value)
    assert SECRET not in caplog.text
    assert SECRET not in repr(storage.config)


@pytest.mark.parametrize(
    "operation",
    ["stat", "open", "list", "open_writer", "upload_file", "delete", "sweep_partials"],
)
def test_wrong_credentials_are_named_never_shown(
    s3_s3rver: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture, operation: str
) -> None:
    caplog.set_level(logging.DEBUG)
    good = s3_storage_on(s3_s3rver, name="offsite")
    storage = S3Storage(
        S3Config(
            bucket=good.config.bucket,
            endpoint_url=s3_s3rver.endpoint_url,
            access_key="NOT-AN-ACCOUNT",
            secret_key=SECRET,
            name="offsite",
            max_attempts=1,
            part_attempts=1,
        )
    )
    with pytest.raises(StorageError) as caught:
        _operations(storage, tmp_path)[operation]()
    _assert_clear(caught, storage, caplog, "access denied")


@pytest.mark.parametrize("operation", ["stat", "open", "list", "open_writer", "upload_file"])
def test_a_missing_bucket_is_named(
    s3_server: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture, operation: str
) -> None:
    caplog.set_level(logging.DEBUG)
    storage = S3Storage(
        S3Config(
            bucket="no-such-bucket-here",
            endpoint_url=s3_server.endpoint_url,
            access_key=s3_server.access_key,
            secret_key=SECRET if s3_server.kind == "moto" else s3_server.secret_key,
            name="offsite",
        )
    )
    with pytest.raises(StorageError) as caught:
        _operations(storage, tmp_path)[operation]()
    _assert_clear(caught, storage, caplog, "the bucket 'no-such-bucket-here' does not exist")


@pytest.mark.parametrize("operation", ["stat", "list", "open_writer", "upload_file"])
def test_an_unreachable_endpoint_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, operation: str
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nobody listens there
    storage = S3Storage(
        S3Config(
            bucket="backups",
            endpoint_url=f"http://127.0.0.1:{port}",
            access_key="AKIDEXAMPLE",
            secret_key=SECRET,
            name="offsite",
            connect_timeout=1.0,
            max_attempts=2,
            part_attempts=1,
        )
    )
    with pytest.raises(StorageError) as caught:
        _operations(storage, tmp_path)[operation]()
    _assert_clear(caught, storage, caplog, "cannot reach the endpoint")
    assert f"127.0.0.1:{port}" in str(caught.value)


def test_a_missing_object_in_an_existing_bucket_is_object_not_found(s3_server: S3Server) -> None:
    storage = s3_storage_on(s3_server)
    with pytest.raises(ObjectNotFound, match="no object"):
        storage.stat(KEY)
