"""Multipart upload of a finished file to real S3 servers (moto, s3rver):
the part-size rule, the ledger records, progress, the SHA-256 check, and
resuming after a network failure sends only the parts not acknowledged."""

from __future__ import annotations

import base64
import hashlib
import math
import zlib
from pathlib import Path

import pytest

from engine.errors import ChecksumMismatch, StorageError
from storage.s3_config import MAX_PARTS, MIB, S3Config, make_client, part_size_for
from storage.s3_ledger import JsonFileLedger, MemoryLedger, PartRecord
from tests.s3_servers import S3Server
from tests.storage.conftest import TEST_PART_SIZE, s3_storage_on
from tests.storage.s3_helpers import part_puts, random_file, stored_sha256
from tests.tcp_fault_proxy import FaultProxy, Rule

KEY = "app_1/backup_20260105_103000_3fa2c1.tar.zst.age"
SIZE = 3 * TEST_PART_SIZE + 12345  # four parts, the last one short


# -- the part-size rule, as a pure function ---------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, 8 * MIB),
        (1, 8 * MIB),
        (80 * 1000 * MIB, 8 * MIB),  # 80,000 MiB: exactly 10,000 parts of 8 MiB
        (80 * 1000 * MIB + 1, 9 * MIB),
        (1024 * 1024 * MIB, 105 * MIB),  # 1 TiB
        (5 * 1024 * 1024 * MIB, 525 * MIB),  # 5 TiB, S3's largest object
    ],
)
def test_part_size_is_at_least_8_mib_and_grows_to_fit_10000_parts(size: int, expected: int) -> None:
    assert part_size_for(size) == expected


@pytest.mark.parametrize("size", [1, 10**9, 4 * 10**9, 123_456_789_012, 5 * 1024**4])
def test_any_size_fits_in_10000_parts(size: int) -> None:
    part = part_size_for(size)
    assert part >= 8 * MIB and part % MIB == 0
    assert math.ceil(size / part) <= MAX_PARTS


def test_part_size_refuses_more_than_s3_holds() -> None:
    with pytest.raises(ValueError, match="largest object"):
        part_size_for(5 * 1024**4 + 1)


def test_config_never_shows_its_secret() -> None:
    config = S3Config(bucket="b", access_key="AKIDEXAMPLE", secret_key="s3cr3t-value")
    assert "s3cr3t-value" not in repr(config)
    assert "s3cr3t-value" not in config.where
    in_url = S3Config(bucket="b", endpoint_url="https://user:s3cr3t-value@minio.lan:9000/")
    assert "s3cr3t-value" not in in_url.where and "minio.lan:9000" in in_url.where


@pytest.mark.parametrize(
    ("addressing", "checksums"), [("path", "when_required"), ("virtual", "when_supported")]
)
def test_the_client_is_built_from_the_locations_settings(addressing: str, checksums: str) -> None:
    """The explicit botocore Config the issue asks for, read back from a real client."""
    config = S3Config(
        bucket="b", endpoint_url="http://127.0.0.1:9", addressing_style=addressing,  # type: ignore[arg-type]
        request_checksum_calculation=checksums, response_checksum_validation=checksums,  # type: ignore[arg-type]
        connect_timeout=3.0, read_timeout=7.0, max_attempts=6, concurrency=5,
    )  # fmt: skip
    built = make_client(config).meta.config
    # botocore's max_attempts here counts retries: 6 of them, 7 attempts in all.
    assert built.retries == {"mode": "standard", "total_max_attempts": 7}
    assert (built.connect_timeout, built.read_timeout) == (3.0, 7.0)
    assert built.s3 == {"addressing_style": addressing}
    assert built.request_checksum_calculation == checksums
    assert built.response_checksum_validation == checksums
    assert built.max_pool_connections == 5 + 2  # a connection per part or range in flight
    assert built.signature_version == "s3v4"


# -- uploading a file --------------------------------------------------------------


def test_upload_file_in_parts_records_each_part_and_checks_the_sha256(
    s3_server: S3Server, tmp_path: Path
) -> None:
    storage = s3_storage_on(s3_server, concurrency=3)
    source = tmp_path / "archive"
    digest = random_file(source, SIZE)
    seen_parts: list[int] = []

    class WatchingLedger(MemoryLedger):
        def record(self, upload_id: str, number: int, size: int, checksum: str, etag: str) -> None:
            super().record(upload_id, number, size, checksum, etag)
            seen_parts.append(number)
            assert size == (TEST_PART_SIZE if number < 4 else SIZE - 3 * TEST_PART_SIZE)
            # Content-MD5 by default; moto's and s3rver's ETag is the part's MD5.
            assert checksum == f"md5:{etag.strip(chr(34))}" and len(checksum) == 36

    reports: list[tuple[int, int]] = []
    ledger = WatchingLedger()
    info = storage.upload_file(
        source, KEY, ledger=ledger, progress=lambda d, t: reports.append((d, t))
    )

    assert (info.key, info.size) == (KEY, SIZE)
    assert sorted(seen_parts) == [1, 2, 3, 4]
    assert ledger.pending(KEY) is None  # complete: forgotten
    assert storage.head(KEY)["Metadata"]["sha256"] == digest
    assert storage.verify(KEY, digest, deep=True).size == SIZE
    assert stored_sha256(storage, KEY) == digest
    assert reports[-1] == (SIZE, SIZE)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)
    assert [i.key for i in storage.list()] == [KEY]  # no marker left in the listing
    assert storage.sweep_partials(0) == []


def test_a_small_file_is_one_put_with_its_sha256(s3_server: S3Server, tmp_path: Path) -> None:
    storage = s3_storage_on(s3_server)
    source = tmp_path / "small"
    digest = random_file(source, 1000)
    storage.upload_file(source, KEY)
    assert storage.verify(KEY, digest, deep=True).size == 1000
    with pytest.raises(ChecksumMismatch, match="expected"):
        storage.verify(KEY, "0" * 64)


def test_a_raising_progress_callback_does_not_break_the_upload(
    s3_server: S3Server, tmp_path: Path
) -> None:
    storage = s3_storage_on(s3_server)
    source = tmp_path / "archive"
    digest = random_file(source, SIZE)
    calls = []

    def broken(done: int, total: int) -> None:
        calls.append(done)
        raise RuntimeError("sink down")

    storage.upload_file(source, KEY, progress=broken)
    assert len(calls) >= 2
    assert stored_sha256(storage, KEY) == digest


@pytest.mark.slow
@pytest.mark.parametrize("checksums", ["when_required", "when_supported"])
def test_resume_after_a_network_failure_sends_only_missing_parts(
    s3_server: S3Server, tmp_path: Path, checksums: str
) -> None:
    source = tmp_path / "archive"
    digest = random_file(source, SIZE)
    ledger = JsonFileLedger(tmp_path / "ledger.json")
    with FaultProxy(s3_server.port) as proxy:
        storage = s3_storage_on(
            s3_server,
            endpoint_url=proxy.endpoint_url,
            concurrency=1,
            max_attempts=1,
            part_attempts=2,
            request_checksum_calculation=checksums,
        )
        # Part 3 fails on every attempt: the network is down for longer than
        # the retries last.
        proxy.add_rule(Rule("partNumber=3", "reset", after_bytes=MIB, times=100))
        with pytest.raises(StorageError, match=storage.config.bucket):
            storage.upload_file(source, KEY, ledger=ledger)
        state = ledger.pending(KEY)
        assert state is not None
        assert sorted(JsonFileLedger(tmp_path / "ledger.json").parts(state.upload_id)) == [1, 2]
        assert not storage.exists(KEY)

        proxy.clear_rules()
        before = len(proxy.requests)
        storage.upload_file(source, KEY, ledger=JsonFileLedger(tmp_path / "ledger.json"))
        resent = part_puts(proxy.requests[before:])
        assert stored_sha256(storage, KEY) == digest

    assert sorted(resent) == [3, 4]
    assert JsonFileLedger(tmp_path / "ledger.json").pending(KEY) is None
    # Each part carried one checksum: CRC32 where the location takes flexible
    # checksums (as aws s3 cp sends), else Content-MD5.
    data = source.read_bytes()
    for request in proxy.requests:
        if request.method != "PUT" or "partNumber=" not in request.target:
            continue
        number = int(request.target.split("partNumber=")[1].split("&")[0])
        part = data[(number - 1) * TEST_PART_SIZE : number * TEST_PART_SIZE]
        if checksums == "when_supported":
            crc = base64.b64encode(zlib.crc32(part).to_bytes(4, "big")).decode()
            assert request.headers["x-amz-checksum-crc32"] == crc
            assert "content-md5" not in request.headers
        else:
            md5 = base64.b64encode(hashlib.md5(part, usedforsecurity=False).digest()).decode()
            assert request.headers["content-md5"] == md5
            assert "x-amz-checksum-crc32" not in request.headers


def test_a_different_file_for_the_key_starts_over(s3_server: S3Server, tmp_path: Path) -> None:
    storage = s3_storage_on(s3_server)
    source = tmp_path / "archive"
    digest = random_file(source, SIZE)
    ledger = MemoryLedger()
    # A pending upload of another file under the same key, one part recorded.
    other = tmp_path / "other"
    random_file(other, SIZE)
    from storage.s3_upload import _start  # the first step of upload_file, alone

    state = _start(storage, KEY, SIZE, TEST_PART_SIZE, "f" * 64)
    ledger.start(state)
    ledger.record(state.upload_id, 1, TEST_PART_SIZE, "md5:" + "a" * 32, '"bogus"')

    storage.upload_file(source, KEY, ledger=ledger)
    assert stored_sha256(storage, KEY) == digest
    assert ledger.pending(KEY) is None
    assert storage.sweep_partials(0) == []  # the old upload's marker went with it


def test_moto_resume_trusts_the_server_over_the_ledger(s3_moto: S3Server, tmp_path: Path) -> None:
    """ListParts where the server has it: a part the ledger lost (killed between
    the server's acknowledgement and the record) is checked against the file's
    MD5 and kept; a part the ledger lists but the server lacks is sent again."""
    storage = s3_storage_on(s3_moto)
    source = tmp_path / "archive"
    digest = random_file(source, SIZE)
    from storage.s3_upload import _start

    state = _start(storage, KEY, SIZE, TEST_PART_SIZE, digest)
    ledger = MemoryLedger()
    ledger.start(state)
    data = source.read_bytes()
    client = storage.client
    for number in (1, 2):  # acknowledged by the server, never recorded
        client.upload_part(
            Bucket=storage.config.bucket,
            Key=KEY,
            UploadId=state.upload_id,
            PartNumber=number,
            Body=data[(number - 1) * TEST_PART_SIZE : number * TEST_PART_SIZE],
        )
    ledger.record(state.upload_id, 3, TEST_PART_SIZE, "md5:" + "b" * 32, '"not-on-the-server"')

    with FaultProxy(s3_moto.port) as proxy:
        storage.client = s3_storage_on(s3_moto, endpoint_url=proxy.endpoint_url).client
        storage.upload_file(source, KEY, ledger=ledger)
        sent = part_puts(proxy.requests)
        assert stored_sha256(storage, KEY) == digest
    assert sorted(sent) == [3, 4]


def test_an_upload_gone_from_the_server_starts_over(s3_moto: S3Server, tmp_path: Path) -> None:
    storage = s3_storage_on(s3_moto)
    source = tmp_path / "archive"
    digest = random_file(source, SIZE)
    from storage.s3_upload import _start

    state = _start(storage, KEY, SIZE, TEST_PART_SIZE, digest)
    ledger = MemoryLedger()
    ledger.start(state)
    ledger.record(state.upload_id, 1, TEST_PART_SIZE, "md5:" + "c" * 32, '"x"')
    storage.abort_multipart(KEY, state.upload_id)  # e.g. a lifecycle rule removed it

    storage.upload_file(source, KEY, ledger=ledger)
    assert stored_sha256(storage, KEY) == digest
    uploads = storage.client.list_multipart_uploads(Bucket=storage.config.bucket)
    assert uploads.get("Uploads", []) == []


def test_an_upload_that_cannot_complete_is_aborted_and_says_so(
    s3_moto: S3Server, tmp_path: Path
) -> None:
    """The multipart upload vanishes after the last part (a lifecycle rule, an
    operator): CompleteMultipartUpload fails, the run cannot resume, so it
    drops the upload and its ledger entry and says to upload again.
    (moto only: s3rver cannot abort, and its process dies on a Complete that
    names a part it lacks, so that case cannot be staged there.)"""
    storage = s3_storage_on(s3_moto)
    source = tmp_path / "archive"
    digest = random_file(source, SIZE)

    class VanishingLedger(MemoryLedger):
        def record(self, upload_id: str, number: int, size: int, checksum: str, etag: str) -> None:
            super().record(upload_id, number, size, checksum, etag)
            if len(self.parts(upload_id)) == 4:
                storage.client.abort_multipart_upload(
                    Bucket=storage.config.bucket, Key=KEY, UploadId=upload_id
                )

    ledger = VanishingLedger()
    with pytest.raises(StorageError, match="can no longer be completed"):
        storage.upload_file(source, KEY, ledger=ledger)
    assert ledger.pending(KEY) is None
    assert not storage.exists(KEY)
    assert storage.sweep_partials(0) == []
    storage.upload_file(source, KEY, ledger=MemoryLedger())  # a fresh run succeeds
    assert stored_sha256(storage, KEY) == digest


def test_part_record_fields() -> None:
    record = PartRecord(part_number=2, size=5, checksum="md5:" + "e" * 32, etag='"t"')
    assert (record.part_number, record.size, record.etag) == (2, 5, '"t"')
