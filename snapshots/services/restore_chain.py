"""An incremental's chain, made ready for a restore (issue 13): every link
in the database completed, every archive present, each backup.json naming
the archive before it (and that archive's SHA-256) as its parent. Checked
before anything is touched; each archive's stored SHA-256 is then checked
in the staging pass that reads it (engine.restore.chain)."""

from __future__ import annotations

from typing import Any

from engine.errors import ArchiveError, EngineError
from engine.restore.chain import ChainLinkRecord, check_links
from engine.restore.staging import StoredArchive
from snapshots.models import Snapshot
from snapshots.services.chain_index import ChainBroken, snapshot_chain
from snapshots.services.restore_archive import first_member, open_stream, stored_archive
from snapshots.services.restore_errors import RestoreRefused
from snapshots.storage_locations import get_storage


def refuse_broken_chain(snapshot: Snapshot) -> list[Snapshot]:
    """SNAPSHOT's chain, full first, from the database alone; RestoreRefused
    when a link is missing or not completed."""
    try:
        return snapshot_chain(snapshot)
    except ChainBroken as exc:
        raise RestoreRefused(f"snapshot {snapshot.backup_id} cannot be restored: {exc}") from exc


def ready_chain(
    snapshot: Snapshot,
) -> tuple[list[Snapshot], list[StoredArchive], list[dict[str, Any]]]:
    """(snapshots, their stored archives, their backup.json), newest first."""
    chain = refuse_broken_chain(snapshot)[::-1]
    for link in chain:
        try:
            present = get_storage(link.storage_location).exists(link.storage_key)
        except EngineError as exc:
            raise RestoreRefused(
                f"the archive of {link.backup_id} cannot be reached: {exc}"
            ) from exc
        if not present:
            raise RestoreRefused(
                f"snapshot {snapshot.backup_id} cannot be restored: the archive of "
                f"{link.backup_id}, link {chain[::-1].index(link) + 1} of its chain of "
                f"{len(chain)}, is missing ({link.storage_location}:{link.storage_key})"
            )
    stored = [stored_archive(link) for link in chain]  # no key: refused here
    backups = [first_member(link, open_stream(link)) for link in chain]
    records = [ChainLinkRecord(link.backup_id, link.sha256, link.kind) for link in chain]
    try:
        check_links(records, backups)
    except ArchiveError as exc:
        raise RestoreRefused(
            f"snapshot {snapshot.backup_id} cannot be restored: its chain is broken: {exc}"
        ) from exc
    return chain, stored, backups


def chain_volume_sizes(chain: list[Snapshot]) -> dict[str, dict[str, int]]:
    """Per volume, the files and bytes of all the chain's archives together:
    at most what staging the chain writes (contents["volumes"] of a full)."""
    sizes: dict[str, dict[str, int]] = {}
    for link in chain:
        for name, counts in ((link.contents or {}).get("volumes") or {}).items():
            total = sizes.setdefault(name, {"files": 0, "bytes": 0})
            total["files"] += int(counts.get("files", 0))
            total["bytes"] += int(counts.get("bytes", 0))
    return sizes
