"""Small helpers shared by the S3 storage tests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from storage.s3 import S3Storage

MIB = 1024 * 1024


def random_file(path: Path, size: int) -> str:
    """Write SIZE random bytes to PATH; returns their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, MIB))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def stored_sha256(storage: S3Storage, key: str) -> str:
    """The SHA-256 of the object's bytes, read back through the storage."""
    digest = hashlib.sha256()
    with storage.open(key) as stream:
        while block := stream.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def part_puts(requests: list, upload_id: str | None = None) -> list[int]:
    """Part numbers of the UploadPart requests in a proxy's log, in order."""
    numbers = []
    for request in requests:
        if request.method != "PUT" or "partNumber=" not in request.target:
            continue
        if upload_id is not None and upload_id not in request.target:
            continue
        query = request.target.partition("?")[2]
        params = dict(item.partition("=")[::2] for item in query.split("&"))
        numbers.append(int(params["partNumber"]))
    return numbers
