#!/usr/bin/env python3
"""Apply the block deltas of one incremental archive (python3 stdlib only).

Shipped inside every incremental archive as the member apply_deltas.py, so
that a chain can be restored by hand with python3, tar, zstd and age only
(README: "Restoring a chain by hand"). For each archive of the chain, full
first: remove its manifest's `deleted` paths, `tar -x` it into DIR, then run

    python3 DIR/apply_deltas.py DIR

which patches DIR/volumes/<volume>/<path> with DIR/deltas/<volume>/<path>
for every delta member the archive held, checks each result's SHA-256 and
size against the delta's header, and removes DIR/deltas. Nothing is patched
unless every delta's base matches first (its size and SHA-256). The
service's own restore imports apply_delta() from this file: one
implementation of the format.

Delta member format (all integers little-endian):
    header, 104 bytes: magic b"DABDELT1", u32 block size, u32 zero,
        u64 base size, u64 new size, u64 record count,
        32 bytes SHA-256 of the base, 32 bytes SHA-256 of the new file
    then `count` records, block indexes strictly increasing: u64 block
    index i, then the new bytes of block i: block size bytes, or fewer
    for the last block of the new file (new size - i * block size).
The new file = the base cut or extended (with zeros) to the new size, each
record's bytes written at i * block size.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import sys
from typing import BinaryIO

MAGIC = b"DABDELT1"
HEADER = struct.Struct("<8sIIQQQ32s32s")
RECORD = struct.Struct("<Q")
COPY = 1 << 20


class DeltaError(Exception):
    """A delta that cannot be applied: damaged, or not made on this base."""


def read_header(stream: BinaryIO) -> tuple[int, int, int, int, bytes, bytes]:
    """(block size, base size, new size, count, base SHA-256, new SHA-256)."""
    raw = stream.read(HEADER.size)
    if len(raw) != HEADER.size:
        raise DeltaError("delta is truncated (no header)")
    magic, block, zero, base_size, new_size, count, base_sha, new_sha = HEADER.unpack(raw)
    if magic != MAGIC or zero != 0 or block <= 0 or block > 1 << 24:
        raise DeltaError("not a delta (bad header)")
    if count > (new_size + block - 1) // block:
        raise DeltaError("delta holds more blocks than the new file has")
    return block, base_size, new_size, count, base_sha, new_sha


def file_sha256(fd: int, size: int) -> bytes:
    digest = hashlib.sha256()
    pos = 0
    while pos < size:
        data = os.pread(fd, min(COPY, size - pos), pos)
        if not data:
            break
        digest.update(data)
        pos += len(data)
    return digest.digest()


def apply_delta(
    stream: BinaryIO, fd: int, check_base: bool = True, check_result: bool = True
) -> None:
    """Patch the file open read-write on FD with the delta read from STREAM
    (a binary file object positioned at its start). Raises DeltaError when
    the base (its size always, its SHA-256 with CHECK_BASE) or the result
    (with CHECK_RESULT) is not what the delta says; the file is then
    damaged, so the caller discards it (the restore's staging, or DIR)."""
    block, base_size, new_size, count, base_sha, new_sha = read_header(stream)
    size = os.fstat(fd).st_size
    if size != base_size or (check_base and file_sha256(fd, size) != base_sha):
        raise DeltaError("the file is not the version this delta was made on")
    os.ftruncate(fd, new_size)
    last = -1
    for _ in range(count):
        raw = stream.read(RECORD.size)
        if len(raw) != RECORD.size:
            raise DeltaError("delta is truncated")
        (index,) = RECORD.unpack(raw)
        offset = index * block
        if index <= last or offset >= new_size:
            raise DeltaError("delta has a block out of order or past the end")
        last = index
        length = min(block, new_size - offset)
        data = stream.read(length)
        if len(data) != length:
            raise DeltaError("delta is truncated")
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
    if stream.read(1):
        raise DeltaError("delta has trailing bytes")
    if check_result and file_sha256(fd, new_size) != new_sha:
        raise DeltaError("the patched file does not match the delta's SHA-256")


def _deltas(root: str) -> list[tuple[str, str]]:
    """(delta file, target file) of every delta under ROOT/deltas."""
    found = []
    top = os.path.join(root, "deltas")
    for here, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            delta = os.path.join(here, name)
            rel = os.path.relpath(delta, top)
            found.append((delta, os.path.join(root, "volumes", rel)))
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python3 apply_deltas.py DIR  (DIR: where the archive was extracted)")
        return 2
    root = argv[1]
    pairs = _deltas(root)
    # Every base is checked before any file is patched.
    for delta, target in pairs:
        with open(delta, "rb") as stream:
            _, base_size, _, _, base_sha, _ = read_header(stream)
        if os.path.islink(target) or not os.path.isfile(target):
            raise DeltaError(f"{target}: no regular file to apply {delta} to")
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            if os.fstat(fd).st_size != base_size or file_sha256(fd, base_size) != base_sha:
                raise DeltaError(f"{target} is not the version {delta} was made on")
        finally:
            os.close(fd)
    for delta, target in pairs:
        fd = os.open(target, os.O_RDWR | os.O_NOFOLLOW)
        try:
            with open(delta, "rb") as stream:
                apply_delta(stream, fd, check_base=False)  # checked above
            # The delta member carries the new version's mode, owner and
            # mtime (tar -p --numeric-owner set them on it): copy them over.
            meta = os.stat(delta)
            if os.geteuid() == 0:
                os.fchown(fd, meta.st_uid, meta.st_gid)  # before chmod: chown clears setuid
            os.fchmod(fd, meta.st_mode & 0o7777)
            os.utime(fd, ns=(meta.st_mtime_ns, meta.st_mtime_ns))
        finally:
            os.close(fd)
        print(f"patched {target}")
    shutil.rmtree(os.path.join(root, "deltas"), ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except DeltaError as exc:
        print(f"apply_deltas.py: {exc}", file=sys.stderr)
        sys.exit(1)
