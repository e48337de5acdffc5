"""SHA-256 of the bytes exactly as stored, computed on the way to storage."""

from __future__ import annotations

import hashlib
from typing import BinaryIO, Protocol


class Sink(Protocol):
    def write(self, data: bytes) -> int: ...


class HashingWriter:
    """Passes writes through to OUT, hashing and counting them."""

    def __init__(self, out: Sink) -> None:
        self._out = out
        self._sha256 = hashlib.sha256()
        self.bytes_written = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._sha256.update(data)
        self.bytes_written += len(data)
        return len(data)

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


def sha256_of_stream(stream: BinaryIO, chunk_size: int = 1024 * 1024) -> tuple[str, int]:
    """(hex digest, size) of everything STREAM yields."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(chunk_size):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def sidecar_text(sha256: str, filename: str) -> str:
    """`sha256sum` format, so `sha256sum -c` checks the archive by hand."""
    return f"{sha256}  {filename}\n"


def parse_sidecar(text: str) -> str:
    """The hex digest of a sidecar; ValueError if malformed."""
    digest = text.split(maxsplit=1)[0] if text.strip() else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("malformed .sha256 sidecar")
    return digest
