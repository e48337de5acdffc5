"""A snapshot's stored archive, opened as a restore reads it: as a tar
stream (backup.json, a rollback's dumps), or once for the staging pass with
the stored bytes hashed as they are read (engine.restore.staging)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, BinaryIO, TypeVar

from engine.archive.source import open_tar_source
from engine.errors import ArchiveError, EngineError, ObjectNotFound, brief
from engine.hashing import parse_sidecar
from engine.restore.plan import OpenStream, read_backup_json
from engine.restore.staging import ArchiveRefused, StoredArchive
from engine.restore.stream import StoredPass
from snapshots.models import Snapshot
from snapshots.services.encryption import EncryptionNotConfigured, identities, passphrase
from snapshots.storage_locations import get_storage

T = TypeVar("T")


def open_stream(snapshot: Snapshot) -> OpenStream:
    def open_tar() -> AbstractContextManager[BinaryIO]:
        return open_tar_source(
            get_storage(snapshot.storage_location), snapshot.storage_key,
            compression=snapshot.compression,  # type: ignore[arg-type]
            encrypted=snapshot.encrypted,
            identities=identities() if snapshot.encrypted else (),
            passphrase=passphrase() if snapshot.encrypted else None,
        )  # fmt: skip

    return open_tar


def stored_archive(snapshot: Snapshot) -> StoredArchive:
    """SNAPSHOT's file for one checked read: what it must hash to is the
    snapshot's record and its `.sha256` sidecar (deep verification's checks)."""
    storage = get_storage(snapshot.storage_location)
    key = snapshot.storage_key
    # Asked before the read: an encrypted snapshot with no key is refused
    # (EncryptionNotConfigured) before anything is staged.
    keys = identities() if snapshot.encrypted else []
    secret = passphrase() if snapshot.encrypted else None
    if snapshot.encrypted and not keys and secret is None:
        raise EncryptionNotConfigured(
            f"snapshot {snapshot.backup_id} is encrypted: reading it needs the age identity "
            "(BACKUP_AGE_IDENTITY_FILE) or the passphrase (BACKUP_PASSPHRASE)"
        )

    @contextmanager
    def open_pass() -> Iterator[StoredPass]:
        with storage.open(key) as raw:
            stored = StoredPass(
                raw, compression=snapshot.compression,  # type: ignore[arg-type]
                encrypted=snapshot.encrypted, identities=keys, passphrase=secret,
            )  # fmt: skip
            try:
                yield stored
            finally:
                stored.close()

    def sidecar() -> str | None:
        try:
            with storage.open(f"{key}.sha256") as handle:
                return parse_sidecar(handle.read(4096).decode("ascii", "replace"))
        except (ObjectNotFound, ValueError):
            return None

    return StoredArchive(
        backup_id=snapshot.backup_id, open=open_pass, sha256=snapshot.sha256, sidecar=sidecar,
        tar_bytes=(snapshot.contents or {}).get("total_bytes"),
    )  # fmt: skip


def first_member(snapshot: Snapshot, open_tar: OpenStream) -> dict[str, Any]:
    """backup.json, read before anything else: an archive that cannot even
    give it is refused as the staging pass would refuse it."""
    return read_or_refuse(snapshot.backup_id, lambda: read_backup_json(open_tar))


def read_or_refuse(backup_id: str, read: Callable[[], T]) -> T:
    """READ() (a member read ahead of the staging pass), or ArchiveRefused
    as the staging pass would refuse an archive it cannot read."""
    try:
        return read()
    except ArchiveError as exc:
        raise ArchiveRefused(f"backup {backup_id} failed validation: {exc}") from exc
    except EngineError:
        raise
    except Exception as exc:  # zstd and gzip raise their own types on corrupt data
        raise ArchiveRefused(
            f"backup {backup_id} failed validation: archive cannot be decompressed: {brief(exc)}"
        ) from exc
