"""Rebuild a snapshot's index from the archives of its chain, when the one
on the worker host is lost (an operator command: it needs the key when the
archives are encrypted, which the backup itself never does).

The state at the chain's k-th archive is the state at the (k-1)-th, minus
the k-th manifest's `deleted` paths, plus (replacing) its volume entries;
each entry's `stored_in` is the archive that last wrote it. The same fold
a chain restore makes. Large files get their block digests back
(engine.incremental.rebuild_blocks), as the lost index had them."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO

from engine.archive.layout import MANIFEST_JSON, split_volume_member
from engine.errors import ArchiveError
from engine.incremental.index import IndexHeader, IndexWriter
from engine.incremental.rebuild_blocks import ArchiveBlocks, with_blocks

OpenTar = Callable[[], AbstractContextManager[BinaryIO]]


def read_manifest(open_tar: OpenTar, blocks: ArchiveBlocks | None = None) -> dict[str, Any]:
    """manifest.json of one archive (its last member: the whole archive is
    read); BLOCKS, if given, gets the block digests its members tell."""
    with open_tar() as stream:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    if blocks is not None and member.isfile() and member.name != MANIFEST_JSON:
                        data = tar.extractfile(member)
                        if data is not None:
                            blocks.take(member.name, member.size, data)
                    if member.name == MANIFEST_JSON and member.isfile():
                        extracted = tar.extractfile(member)
                        if extracted is not None:
                            body = json.loads(extracted.read())
                            if isinstance(body, dict) and isinstance(body.get("entries"), list):
                                return body
        except (tarfile.TarError, ValueError, EOFError) as exc:
            raise ArchiveError(f"archive is unreadable: {exc}") from exc
    raise ArchiveError("archive has no readable manifest.json")


def fold_chain(
    manifests: Sequence[dict[str, Any]], blocks: Sequence[ArchiveBlocks] | None = None
) -> dict[str, dict[str, Any]]:
    """Volume path -> index line at the last manifest's time. MANIFESTS run
    from the full to the snapshot; each must name the one before as parent.
    BLOCKS (one per manifest): the lines get their block digests."""
    state: dict[str, dict[str, Any]] = {}
    previous: str | None = None
    for number, manifest in enumerate(manifests):
        backup_id = manifest.get("backup_id")
        parent = manifest.get("parent_backup_id")
        if number == 0 and manifest.get("kind") != "full":
            raise ArchiveError(f"the chain starts with {backup_id}, which is not a full backup")
        if number and parent != previous:
            raise ArchiveError(f"{backup_id} names {parent} as its parent, not {previous}")
        for path in manifest.get("deleted", []):
            state.pop(path, None)
        for entry in manifest["entries"]:
            if split_volume_member(entry.get("path", "")) is not None:
                line = dict(entry, stored_in=backup_id)
                if line.get("type") == "delta":  # a file, its bytes in this and older archives
                    line["type"] = "file"
                if blocks is not None and line["type"] == "file":
                    line = with_blocks(line, state.get(entry["path"]), blocks[number])
                state[entry["path"]] = line
        previous = backup_id
    return state


def rebuild_index(
    index_dir: Path, app_id: str, chain: Sequence[OpenTar], backup_id: str
) -> tuple[Path, int]:
    """Write BACKUP_ID's index from CHAIN (its archives, full first): (path, entries)."""
    blocks = [ArchiveBlocks() for _ in chain]
    manifests = [read_manifest(tar, held) for tar, held in zip(chain, blocks, strict=True)]
    if manifests[-1].get("backup_id") != backup_id:
        raise ArchiveError(f"the chain's last archive is not {backup_id}")
    state = fold_chain(manifests, blocks)
    last = manifests[-1]
    writer = IndexWriter(
        index_dir, app_id, IndexHeader(backup_id, last.get("parent_backup_id"), last["kind"])
    )
    try:
        for line in state.values():
            writer.add_raw(line)
        return writer.commit(), writer.entries
    except BaseException:
        writer.abort()
        raise
