"""The operator's side of the index kept on the worker host: rebuild a
snapshot's index from the archives of its chain when it is lost (issue 13).
Reading encrypted archives needs the key (BACKUP_AGE_IDENTITY_FILE or the
passphrase); making incrementals never does."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from engine.errors import EngineError
from engine.incremental.rebuild import rebuild_index
from snapshots.models import Snapshot
from snapshots.services.encryption import EncryptionNotConfigured, identities, passphrase
from snapshots.services.restore_archive import open_stream


class ChainBroken(EngineError):
    """A snapshot of the chain is missing or not completed."""


def snapshot_chain(snapshot: Snapshot) -> list[Snapshot]:
    """SNAPSHOT's chain, its full first, every link completed."""
    chain = [snapshot]
    while chain[-1].kind == Snapshot.Kind.INCREMENTAL:
        parent = chain[-1].parent
        if parent is None:
            raise ChainBroken(f"incremental {chain[-1].backup_id} has no parent snapshot")
        chain.append(parent)
    for link in chain:
        if link.status != Snapshot.Status.COMPLETED:
            raise ChainBroken(f"snapshot {link.backup_id} of the chain is {link.status}")
    return chain[::-1]


def rebuild_snapshot_index(snapshot: Snapshot) -> tuple[Path, int]:
    """(path, entries) of SNAPSHOT's index, written again from its chain."""
    chain = snapshot_chain(snapshot)
    encrypted = [s.backup_id for s in chain if s.encrypted]
    if encrypted and not identities() and passphrase() is None:
        raise EncryptionNotConfigured(
            f"snapshot {encrypted[0]} is encrypted: rebuilding the index reads it, which needs "
            "the age identity (BACKUP_AGE_IDENTITY_FILE) or the passphrase (BACKUP_PASSPHRASE)"
        )
    return rebuild_index(
        Path(settings.BACKUP_INDEX_DIR), snapshot.app_id, [open_stream(s) for s in chain],
        snapshot.backup_id,
    )  # fmt: skip
