"""Sending parts of a multipart upload: a few in flight, memory bounded.

The thread that owns the upload hands parts to PartSender.send(); at most
`concurrency` parts are in flight (each holds its bytes until acknowledged),
so memory stays at about concurrency x part size whatever the object's size.
Helper threads only send bytes; acknowledgements come back to the owner
through the futures, which records them (ledger, progress) itself."""

from __future__ import annotations

import base64
import hashlib
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from storage.retry import with_retries
from storage.s3_config import S3Config


@dataclass(frozen=True)
class SentPart:
    part_number: int
    size: int
    checksum: str  # part_checksum(): "md5:<hex>" or "crc32:<base64>", as sent
    etag: str


def uses_crc32(config: S3Config) -> bool:
    """Parts carry CRC32 (x-amz-checksum-crc32, what `aws s3 cp` sends) on a
    location that accepts flexible checksums (request_checksum_calculation
    "when_supported"); else Content-MD5, which every S3 server knows. One
    hash per part either way: MD5 costs 1.35 s of CPU per GiB here, CRC32
    0.2 s (bench_s3.py)."""
    return config.request_checksum_calculation == "when_supported"


def part_checksum(config: S3Config, data: bytes) -> tuple[str, dict[str, str]]:
    """The part's recorded checksum and the UploadPart parameters that send it."""
    if uses_crc32(config):
        value = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
        return f"crc32:{value}", {"ChecksumAlgorithm": "CRC32", "ChecksumCRC32": value}
    md5 = hashlib.md5(data, usedforsecurity=False)
    return f"md5:{md5.hexdigest()}", {"ContentMD5": base64.b64encode(md5.digest()).decode()}


def completed_part(number: int, etag: str, checksum: str) -> dict[str, object]:
    """A CompleteMultipartUpload entry: an upload created with CRC32 lists
    each part's CRC32 too."""
    entry: dict[str, object] = {"PartNumber": number, "ETag": etag}
    if checksum.startswith("crc32:"):
        entry["ChecksumCRC32"] = checksum.removeprefix("crc32:")
    return entry


def upload_checksum(config: S3Config) -> dict[str, str]:
    """CreateMultipartUpload's parameters for the parts' checksum."""
    return {"ChecksumAlgorithm": "CRC32"} if uses_crc32(config) else {}


def send_part(
    client: Any,
    config: S3Config,
    object_key: str,
    upload_id: str,
    part_number: int,
    data: bytes,
    what: str,
) -> SentPart:
    """Upload one part with its checksum (part_checksum: AWS refuses a part
    that does not match it), retrying transient failures with backoff. The
    checksum is computed once: sent, and recorded (a second digest per part
    cost 0.6 s of CPU per GiB, bench_s3.py)."""
    checksum, params = part_checksum(config, data)

    def upload() -> str:
        response = client.upload_part(
            Bucket=config.bucket,
            Key=object_key,
            UploadId=upload_id,
            PartNumber=part_number,
            Body=data,
            **params,
        )
        return str(response["ETag"])

    etag = with_retries(upload, attempts=config.part_attempts, what=f"{what}: part {part_number}")
    return SentPart(part_number, len(data), checksum, etag)


class PartSender:
    def __init__(
        self, client: Any, config: S3Config, object_key: str, upload_id: str, what: str
    ) -> None:
        self._client = client
        self._config = config
        self._object_key = object_key
        self._upload_id = upload_id
        self._what = what
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="s3-part")
        self._in_flight: set[Future[SentPart]] = set()
        # Acknowledged in the same batch as a failure: settle() hands them back.
        self._early: list[SentPart] = []

    def send(self, part_number: int, data: bytes) -> list[SentPart]:
        """Queue one part; first waits while `concurrency` parts are in flight.
        Returns the parts acknowledged meanwhile; raises a part's failure."""
        acknowledged = self._collect(block=len(self._in_flight) >= self._config.concurrency)
        future = self._pool.submit(
            send_part,
            self._client,
            self._config,
            self._object_key,
            self._upload_id,
            part_number,
            data,
            self._what,
        )
        self._in_flight.add(future)
        return acknowledged

    def drain(self) -> list[SentPart]:
        """Wait for every part in flight; raises the first failure."""
        acknowledged: list[SentPart] = []
        while self._in_flight:
            acknowledged += self._collect(block=True)
        return acknowledged

    def settle(self) -> list[SentPart]:
        """After a failure: let the parts in flight finish, return those that
        made it (so they are recorded and not sent again), ignore the others."""
        for future in self._in_flight:
            future.cancel()
        wait(self._in_flight)
        made_it = self._early + [
            f.result() for f in self._in_flight if not f.cancelled() and f.exception() is None
        ]
        self._in_flight.clear()
        self._early = []
        return made_it

    def close(self) -> None:
        self.settle()
        self._pool.shutdown(wait=True)

    def _collect(self, block: bool) -> list[SentPart]:
        if not self._in_flight:
            return []
        done, _ = wait(self._in_flight, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        acknowledged: list[SentPart] = []
        failure: BaseException | None = None
        for future in done:
            self._in_flight.discard(future)
            error = future.exception()
            if error is None:
                acknowledged.append(future.result())
            elif failure is None:
                failure = error
        if failure is not None:
            self._early.extend(acknowledged)
            raise failure
        return acknowledged
