"""Block deltas of large files changed in place (database files, SQLite,
VM images, appended logs), for incremental backups.

A volume file larger than DELTA_MIN_SIZE gets per-block digests in the
worker-side index (engine.incremental.index: `blocks`, base64 of the
digests, `block_size`, `block_digest`), where the next backup reads them:
with age recipients the worker cannot read the parent archive
(index-rebuild recovers them from the archives: rebuild_blocks.py). When
the next incremental finds that file changed but with the same inode
(written in place), it reads it once, compares each block's digest with the
parent's, and stores only the blocks that differ (an
append: the tail and the old last partial block) as a delta member
deltas/<volume>/<path> in the format of engine.incremental.apply_deltas;
the manifest lists the path as type "delta" with the new file's size,
SHA-256 and metadata. Without the parent's digests (an older index, a file
newly over the threshold, another inode), or when 90 % of its blocks changed
(the writer's WHOLE_RATIO), the file is written whole.

Choices, measured on a real InnoDB tablespace (MariaDB 10.11, a 76 MiB
t.ibd, 1,000 random row updates, clean shutdown; scripts/measure_delta_blocks.py):

    block    changed blocks   delta bytes (% of the file)
    4 KiB        2,503        10.3 MB (12.9 %)
    8 KiB        1,800        14.8 MB (18.5 %)
    16 KiB         900        14.8 MB (18.5 %)
    64 KiB         667        43.7 MB (54.9 %)

BLOCK_SIZE is 16 KiB, InnoDB's page: 8 KiB stores the same bytes with twice
the digests; 4 KiB stores 30 % less on InnoDB (a page update changes its
header, trailer and row, ~2.8 of its four 4 KiB parts) but costs four times
the digests, which the index keeps and the next backup holds in memory
(1.3 MB of base64 per GiB of large files at 16 KiB, 5.3 MB at 4 KiB: 40 GB
of database files would take 210 MB of RAM); 64 KiB stores three times
more. PostgreSQL's 8 KiB pages come in pairs per block (a lone page rewrite
costs 16 KiB). Digest: SHA-256 cut to 16 bytes ("sha256-16"). Measured per
16 KiB block: SHA-256 1,640 MB/s, BLAKE2b 890-1,130 MB/s, MD5 770 MB/s
(the CPU has SHA extensions); 16 bytes keep collisions out of reach even
of a tenant crafting block pairs (8 bytes would be a 2^32 birthday search).
The whole file's SHA-256 is still computed and checked on restore.
DELTA_MIN_SIZE 1 MiB: below it, the archive writer batches files as small
ones, and a delta's saving is a few hundred KiB at most while its digests
cost index space on every backup.

Memory: the file is read in READ_CHUNK-sized pieces (two buffers), changed
blocks go to a temporary file (the tar header needs the member's size
first); what is held is 16 bytes per block of the file (the parent's and
the new digests: 1 MiB per GiB).

Time: the whole file's SHA-256 runs on a thread of its own while the
caller's thread digests the same chunk's blocks (hashlib releases the GIL
on buffers over 2 KiB, so the two use two cores), and the kernel is asked
to read the next chunk ahead meanwhile. On bench_incremental's 1.2 GB of
database files and logs an incremental spent ~1.8 s hashing them in turn.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engine.archive.file_reader import FixedSizeFileReader
from engine.incremental.apply_deltas import HEADER, MAGIC, RECORD

BLOCK_SIZE = 16 * 1024
DIGEST_SIZE = 16
DIGEST_NAME = "sha256-16"
DELTA_MIN_SIZE = 1024 * 1024  # files strictly larger than this
DELTAS_DIR = "deltas"
APPLY_SCRIPT = "apply_deltas.py"
READ_CHUNK = 2 * 1024 * 1024  # two of them: one hashed whole while the next is read


def delta_member(path: str) -> str:
    """The delta member of volume member PATH (volumes/<v>/<p> -> deltas/<v>/<p>)."""
    return DELTAS_DIR + path[path.index("/") :]


def volume_path(delta_name: str) -> str:
    """The volume member a delta member patches."""
    return "volumes" + delta_name[delta_name.index("/") :]


def apply_script() -> bytes:
    """The stdlib-only script shipped in every incremental archive."""
    return (Path(__file__).parent / "apply_deltas.py").read_bytes()


def block_digest(data: Any) -> bytes:
    return hashlib.sha256(data).digest()[:DIGEST_SIZE]


class BlockDigests:
    """Per-block digests of a stream of data given in order (update(), as a
    hashlib object is fed: the archive writer's thread calls it)."""

    def __init__(self) -> None:
        self._digests = bytearray()
        self._partial = bytearray()

    def update(self, data: Any) -> None:
        view = memoryview(data)
        if self._partial:
            take = min(BLOCK_SIZE - len(self._partial), len(view))
            self._partial += view[:take]
            view = view[take:]
            if len(self._partial) < BLOCK_SIZE:
                return
            self._digests += block_digest(self._partial)
            self._partial = bytearray()
        whole = len(view) - len(view) % BLOCK_SIZE
        for start in range(0, whole, BLOCK_SIZE):
            self._digests += block_digest(view[start : start + BLOCK_SIZE])
        if whole < len(view):
            self._partial += view[whole:]

    def digests(self) -> bytes:
        """Every block's digest (call once it is all fed)."""
        return bytes(self._digests) + (block_digest(self._partial) if self._partial else b"")

    def index_fields(self) -> dict[str, Any]:
        """The index line's fields for the file (call once it is all fed)."""
        return encode_blocks(self.digests())


def encode_blocks(digests: bytes) -> dict[str, Any]:
    return {
        "block_size": BLOCK_SIZE,
        "block_digest": DIGEST_NAME,
        "blocks": base64.b64encode(digests).decode("ascii"),
    }


def parent_blocks(entry: dict[str, Any]) -> bytes | None:
    """The parent's block digests from its index line, None when it has none
    this version can use (written before deltas, another block size)."""
    if entry.get("block_size") != BLOCK_SIZE or entry.get("block_digest") != DIGEST_NAME:
        return None
    try:
        digests = base64.b64decode(entry["blocks"], validate=True)
    except (KeyError, ValueError, TypeError):
        return None
    expected = (entry.get("size", -1) + BLOCK_SIZE - 1) // BLOCK_SIZE
    return digests if len(digests) == expected * DIGEST_SIZE else None


def can_delta(parent: dict[str, Any] | None, st: os.stat_result) -> bytes | None:
    """The parent's digests when the file of ST may be stored as a delta:
    a regular file over the threshold, one name, the same inode as the
    parent's version (changed in place), whose digests the parent kept."""
    if parent is None or parent.get("type") != "file" or not isinstance(parent.get("sha256"), str):
        return None
    if st.st_size <= DELTA_MIN_SIZE or st.st_nlink != 1 or parent.get("ino") != st.st_ino:
        return None
    return parent_blocks(parent)


@dataclass
class Delta:
    """A delta built by build_delta: its member's bytes (header + records
    in SPOOL), and what the index and manifest need of the new file."""

    header: bytes
    spool: IO[bytes]
    records: int
    size: int  # of the member: header + records
    sha256: str  # of the new file
    index_fields: dict[str, Any]
    changed: bool  # the file changed while it was read


def build_delta(
    fd: int, st: os.stat_result, base_digests: bytes, base: dict[str, Any], spill_dir: Path | None
) -> Delta:
    """Read the file open on FD (ST: its fstat before the read) once: its
    SHA-256, its block digests, and the blocks whose digest differs from
    BASE_DIGESTS (the parent's version, index line BASE) into a temp file."""
    size = st.st_size
    reader = FixedSizeFileReader(fd, size, st.st_blocks * 512 < size, hashing=False, before=st)
    whole = hashlib.sha256()
    digests = bytearray()
    spool = tempfile.TemporaryFile(dir=spill_dir, prefix="delta-")  # noqa: SIM115 - Delta owns it
    records = 0
    buffers = [memoryview(bytearray(READ_CHUNK)) for _ in range(2)]
    hashing: list[Future[None] | None] = [None, None]  # each buffer's whole-file update
    index = offset = turn = 0
    pool = ThreadPoolExecutor(1, thread_name_prefix="delta-sha256")
    try:
        while True:
            if (busy := hashing[turn]) is not None:
                busy.result()  # the buffer is free again
            n = reader.readinto(buffers[turn])
            if not n:
                break
            offset += n
            _read_ahead(fd, offset, size)
            chunk = buffers[turn][:n]
            hashing[turn] = pool.submit(whole.update, chunk)  # one worker: in order
            for start in range(0, n, BLOCK_SIZE):
                block = chunk[start : start + BLOCK_SIZE]
                digest = block_digest(block)
                digests += digest
                at = index * DIGEST_SIZE
                if base_digests[at : at + DIGEST_SIZE] != digest:
                    spool.write(RECORD.pack(index))
                    spool.write(block)
                    records += 1
                index += 1
            turn ^= 1
        for busy in hashing:
            if busy is not None:
                busy.result()
        reader.finish()
        sha256 = whole.digest()
        header = HEADER.pack(
            MAGIC, BLOCK_SIZE, 0, base["size"], size, records, bytes.fromhex(base["sha256"]), sha256
        )
        spool.flush()
        length = len(header) + spool.tell()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    finally:
        pool.shutdown(wait=True)
    return Delta(header, spool, records, length, sha256.hex(), encode_blocks(bytes(digests)),
                 reader.changed)  # fmt: skip


def _read_ahead(fd: int, offset: int, size: int) -> None:
    """Ask the kernel to read the next two chunks while this one is hashed
    (asynchronous: the disk works while the CPU hashes)."""
    if offset < size:
        os.posix_fadvise(fd, offset, min(2 * READ_CHUNK, size - offset), os.POSIX_FADV_WILLNEED)
