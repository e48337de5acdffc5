"""Rebuild a snapshot's index from the archives of its chain, when the one
on the worker host is lost (an operator command: it needs the key when the
archives are encrypted, which the backup itself never does).

The state at the chain's k-th archive is the state at the (k-1)-th, minus
the k-th manifest's `deleted` paths, plus (replacing) its volume entries;
each entry's `stored_in` is the archive that last wrote it. The same fold
a chain restore makes."""

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

OpenTar = Callable[[], AbstractContextManager[BinaryIO]]


def read_manifest(open_tar: OpenTar) -> dict[str, Any]:
    """manifest.json of one archive (its last member: the whole archive is read)."""
    with open_tar() as stream:
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    if member.name == MANIFEST_JSON and member.isfile():
                        extracted = tar.extractfile(member)
                        if extracted is not None:
                            body = json.loads(extracted.read())
                            if isinstance(body, dict) and isinstance(body.get("entries"), list):
                                return body
        except (tarfile.TarError, ValueError, EOFError) as exc:
            raise ArchiveError(f"archive is unreadable: {exc}") from exc
    raise ArchiveError("archive has no readable manifest.json")


def fold_chain(manifests: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Volume path -> index line at the last manifest's time. MANIFESTS run
    from the full to the snapshot; each must name the one before as parent."""
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
                state[entry["path"]] = line
        previous = backup_id
    return state


def rebuild_index(
    index_dir: Path, app_id: str, chain: Sequence[OpenTar], backup_id: str
) -> tuple[Path, int]:
    """Write BACKUP_ID's index from CHAIN (its archives, full first): (path, entries)."""
    manifests = [read_manifest(open_tar) for open_tar in chain]
    if manifests[-1].get("backup_id") != backup_id:
        raise ArchiveError(f"the chain's last archive is not {backup_id}")
    state = fold_chain(manifests)
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
