"""Where a backup stands in its chain: what the engine needs to write an
incremental (the parent's identity and index) and to write its own index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.incremental.changes import ParentState
from engine.incremental.index import IndexHeader, IndexUnusable, IndexWriter, index_path


@dataclass(frozen=True)
class ChainLink:
    """An incremental's parent: the app's latest completed snapshot of the chain."""

    parent_backup_id: str
    parent_sha256: str  # of the parent's stored archive: backup.json names the exact bytes
    position: int  # this backup's place in the chain: 1 for the first incremental


@dataclass
class ChainStart:
    index: IndexWriter
    parent: ParentState | None  # None: the backup is full
    link: ChainLink | None
    warning: str | None = None  # an incremental was asked for, but this one is full


def start_chain(index_dir: Path, app_id: str, backup_id: str, link: ChainLink | None) -> ChainStart:
    """Open this backup's index and, for an incremental, read its parent's.
    A parent whose index is lost or unusable makes the backup full (with a
    warning naming the operator command that rebuilds the index), never
    an incremental against a guess."""
    warning = None
    parent = None
    if link is not None:
        path = index_path(index_dir, app_id, link.parent_backup_id)
        try:
            parent = ParentState.from_index(path, link.parent_backup_id)
        except (IndexUnusable, KeyError, TypeError) as exc:
            why = (
                exc
                if isinstance(exc, IndexUnusable)
                else f"index of {link.parent_backup_id} is malformed"
            )
            warning = (
                f"made a full backup instead of an incremental: {why} (rebuild it with "
                f"`manage.py backup index-rebuild {link.parent_backup_id}`)"
            )
            link = None
    header = IndexHeader(
        backup_id, link.parent_backup_id if link else None, "incremental" if link else "full"
    )
    return ChainStart(IndexWriter(index_dir, app_id, header), parent, link, warning)
