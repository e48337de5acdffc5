"""The restore's hasher thread: whole files in batches, large ones piece by
piece, interleaved as extraction hands them over; every digest as hashlib's."""

from __future__ import annotations

import hashlib
import random

import pytest

from engine.restore.file_hashes import BATCH_BYTES, BATCH_FILES, FileHashes


def test_batches_and_pieces_interleaved_give_hashlibs_digests() -> None:
    rng = random.Random(3)
    chunk = rng.randbytes(4 << 20)  # stands in for a read-ahead chunk
    view = memoryview(chunk)
    hashes = FileHashes()
    expected: dict[str, str] = {}
    pos = 0
    # More files than one batch holds, by count (tiny and empty files) and by bytes.
    for index in range(BATCH_FILES * 2 + 7):
        size = 0 if index % 50 == 0 else rng.randint(1, 3000)
        if index % 97 == 0:  # a large file in pieces, between small ones
            name = f"big{index}"
            start = pos
            for piece in range(3):
                hashes.piece(name, view[pos : pos + 100_000], piece == 2)
                pos += 100_000
            expected[name] = hashlib.sha256(chunk[start:pos]).digest()
        name = f"f{index}"
        hashes.whole(name, view[pos : pos + size])
        expected[name] = hashlib.sha256(chunk[pos : pos + size]).digest()
        pos = (pos + size) % (len(chunk) - BATCH_BYTES)
    hashes.known("backup.json", "ab" * 32)
    expected["backup.json"] = "ab" * 32
    assert hashes.finish() == expected


def test_an_error_on_the_thread_is_raised_by_finish() -> None:
    hashes = FileHashes()
    hashes.piece("x", memoryview(b"abc"), False)
    hashes.piece("x", "not a buffer", True)  # type: ignore[arg-type]
    hashes.whole("y", memoryview(b"later members are still hashed"))
    with pytest.raises(TypeError):
        hashes.finish()
    assert hashes.digests["y"] == hashlib.sha256(b"later members are still hashed").digest()
    hashes.close()  # safe to repeat
