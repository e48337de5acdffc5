"""The age v1 payload (STREAM) shared by AgeWriter and AgeReader.

The payload is a 16-byte nonce, then 64 KiB plaintext chunks, each sealed with
ChaCha20-Poly1305 under HKDF(file key, nonce, "payload") with nonce
counter(11 bytes, big endian) || last-chunk flag. Both sides hold at most one
chunk in memory, so archives of any size stream through."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from engine.age.header import INTRO, hkdf_sha256

CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
ENCRYPTED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
NONCE_SIZE = 16


def is_age_file(prefix: bytes) -> bool:
    """Whether `prefix` (the first bytes of a file, at least 22) starts like
    a binary age v1 file."""
    return bytes(prefix[: len(INTRO)]) == INTRO


def payload_aead(file_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(hkdf_sha256(file_key, nonce, b"payload"))


def chunk_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
