"""Block digests for a rebuilt index (engine.incremental.rebuild), so that
incrementals after an index-rebuild still store large files as deltas.

While an archive is read for its manifest, each volume file over
DELTA_MIN_SIZE stored whole is hashed block by block, and each delta member
gives the digests of the blocks it holds. Folding the chain, a file written
whole takes its own digests; a delta takes its base's (the version before)
with the blocks it holds replaced: every block it does not hold is the
base's, unchanged (engine.incremental.delta stores every block whose digest
differs, and every block past the base's end). Memory: 16 bytes per block
of the large files of one archive.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import IO, Any

from engine.archive.layout import VOLUMES_DIR
from engine.incremental.apply_deltas import RECORD, DeltaError, read_header
from engine.incremental.delta import (
    BLOCK_SIZE,
    DELTA_MIN_SIZE,
    DELTAS_DIR,
    DIGEST_SIZE,
    READ_CHUNK,
    BlockDigests,
    block_digest,
    encode_blocks,
    parent_blocks,
    volume_path,
)  # fmt: skip


@dataclass
class ArchiveBlocks:
    """What one archive says about block digests."""

    whole: dict[str, bytes] = field(default_factory=dict)  # volume path -> digests
    deltas: dict[str, dict[int, bytes]] = field(default_factory=dict)  # path -> index -> digest

    def take(self, name: str, size: int, data: IO[bytes]) -> None:
        """Member NAME of SIZE bytes, its data readable from DATA."""
        if name.startswith(f"{VOLUMES_DIR}/") and size > DELTA_MIN_SIZE:
            digests = BlockDigests()
            while chunk := data.read(READ_CHUNK):
                digests.update(chunk)
            self.whole[name] = digests.digests()
        elif name.startswith(f"{DELTAS_DIR}/"):
            try:
                block, _, new_size, count, _, _ = read_header(data)  # type: ignore[arg-type]
                if block != BLOCK_SIZE:
                    return
                held = {}
                for _ in range(count):
                    (index,) = RECORD.unpack(data.read(RECORD.size))
                    length = min(block, new_size - index * block)
                    held[index] = block_digest(data.read(length))
            except (DeltaError, struct.error):  # a damaged delta: no digests then
                return
            self.deltas[volume_path(name)] = held


def with_blocks(
    line: dict[str, Any], before: dict[str, Any] | None, blocks: ArchiveBlocks
) -> dict[str, Any]:
    """LINE (an index line of this archive) with its block digests when they
    can be known; BEFORE: the path's line at the archive before."""
    path = line["path"]
    for key in ("blocks", "block_size", "block_digest"):
        line.pop(key, None)
    if path in blocks.whole:
        line.update(encode_blocks(blocks.whole[path]))
    elif path in blocks.deltas and before is not None:
        base = parent_blocks(before)
        if base is None:
            return line
        held = blocks.deltas[path]
        count = math.ceil(line["size"] / BLOCK_SIZE)
        have = len(base) // DIGEST_SIZE
        digests = bytearray()
        for index in range(count):
            if index in held:
                digests += held[index]
            elif index < have:
                digests += base[index * DIGEST_SIZE : (index + 1) * DIGEST_SIZE]
            else:
                return line  # not a delta this version wrote: no digests
        line.update(encode_blocks(bytes(digests)))
    return line
