"""Extract an incremental's chain into staging directories, each file
written once, in its final version.

The newest archive goes first, whole: it holds every directory, symlink and
hardlink of the final tree (an incremental always writes them), every file
changed since its parent, and the dumps and config. Then each older archive
in turn, newest to oldest, gives only the regular files that no later
archive wrote or deleted: what a later manifest lists is known once that
archive is read, before the older one is opened. Every archive is checked
member by member against its own manifest as a full restore checks it
(engine.restore.extract); directories get their metadata at the very end.

Block deltas (engine.incremental.delta): a file a later archive holds as
a delta is not decided by it; its deltas are spooled as the archives are
read, the older archive that has it whole writes it, and once every
archive is read the deltas are applied oldest first (engine.restore.deltas).

Before any of that, check_links: each archive's backup.json names the one
after it in the chain as its parent, with that archive's SHA-256.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.archive.read_ahead import Source
from engine.archive.tar_reader import TarReader
from engine.errors import ArchiveError
from engine.progress import ProgressCallback, no_progress
from engine.restore.deltas import DeltaSpool, PendingDeltas, apply_pending
from engine.restore.extract import ExtractReport, Spooled, _Extractor
from engine.restore.stream import stored_mismatch

if TYPE_CHECKING:
    from engine.restore.staging import StoredArchive


@dataclass(frozen=True)
class ChainLinkRecord:
    """One snapshot of the chain as the database knows it."""

    backup_id: str
    sha256: str
    kind: str


def check_links(records: Sequence[ChainLinkRecord], backups: Sequence[dict[str, Any]]) -> None:
    """RECORDS (newest first, ending with a full) against each archive's
    backup.json (BACKUPS, same order): raises ArchiveError at the first link
    that is not right. Nothing is extracted before this passed."""
    if not records or records[-1].kind != "full":
        raise ArchiveError("the chain does not end with a full backup")
    for number, (record, backup) in enumerate(zip(records, backups, strict=True)):
        if backup.get("backup_id") != record.backup_id:
            held = backup.get("backup_id")
            raise ArchiveError(f"the archive of {record.backup_id} holds {held!r}")
        if backup.get("kind", "full") != record.kind:
            raise ArchiveError(f"{record.backup_id} is {backup.get('kind')!r} in its archive")
        if record.kind == "full":
            if number != len(records) - 1:
                raise ArchiveError(f"{record.backup_id}, a full backup, is inside the chain")
            continue
        parent = records[number + 1]
        if backup.get("parent_backup_id") != parent.backup_id:
            raise ArchiveError(
                f"{record.backup_id} names {backup.get('parent_backup_id')!r} as its parent, "
                f"not {parent.backup_id}"
            )
        if backup.get("parent_sha256") != parent.sha256:
            raise ArchiveError(
                f"{record.backup_id} was made on another {parent.backup_id} (its parent's "
                "SHA-256 differs)"
            )


def extract_chain(
    chain: Sequence[StoredArchive],
    backups: Sequence[dict[str, Any]],
    targets: Mapping[str, Path],
    *,
    spool_dir: Path | None = None,
    progress: ProgressCallback = no_progress,
    on_spooled: Spooled | None = None,
) -> ExtractReport:
    """CHAIN: the stored archives, newest first, each read once with its
    stored bytes hashed (engine.restore.stream.StoredPass); BACKUPS: their
    backup.json (check_links passed). TARGETS: volume -> empty staging dir.
    Returns the newest archive's report. Raises ArchiveError for anything
    hostile or inconsistent, a member not matching its manifest, or stored
    bytes not matching their SHA-256 record or sidecar (the only check of
    the members an older archive is read past for); the caller discards the
    staging dirs."""
    work = Path(tempfile.mkdtemp(prefix=".chain-deltas-", dir=spool_dir))
    pending = PendingDeltas()
    spools: list[DeltaSpool] = [DeltaSpool(work / "0")]
    newest = _Extractor(targets, spool_dir, True, progress, None, deltas=spools[0])
    newest.on_spooled = on_spooled  # its dumps are the chain's (ON_SPOOLED: extract_volumes)
    try:
        report = _run(newest, chain[0])
        known = _decided(newest, spools[0], pending, set())
        for number, (stored, backup) in enumerate(zip(chain[1:], backups[1:], strict=True), 1):
            # A volume the app got later is not in the older archives.
            archived = {volume.get("name") for volume in backup.get("volumes", [])}
            spools.append(DeltaSpool(work / str(number)))
            older = _Extractor(
                {v: path for v, path in targets.items() if v in archived}, None, True,
                progress, None,
                skip_member=lambda name, kind, decided=known: kind != "file" or name in decided,
                deltas=spools[-1],
            )  # fmt: skip
            try:
                _run(older, stored)
            finally:
                older.close()
            known |= _decided(older, spools[-1], pending, known)
        apply_pending(pending, newest.trees, known)
        newest.apply_dirs()
        return report
    finally:
        newest.close()
        for spool in spools:
            spool.close()
        shutil.rmtree(work, ignore_errors=True)


def _decided(
    extractor: _Extractor, spool: DeltaSpool, pending: PendingDeltas, known: set[str]
) -> set[str]:
    """What an archive decided (_listed), less the files it holds as
    deltas, which go to PENDING when no later archive decided them (KNOWN).
    A pending file it wrote whole is the base of its deltas: PENDING gets
    the SHA-256 the extractor computed of it, which finish() compared with
    this archive's manifest (it raises on any difference)."""
    listed = _listed(extractor)
    deltas = extractor.comparison.deltas if extractor.comparison is not None else {}
    for path, entry in deltas.items():
        if path not in known and path in spool.files:
            pending.add(path, spool.files[path], entry)
    decided = listed - deltas.keys()
    digests = extractor.hasher.digests  # only what this archive wrote
    for path in pending.files:
        if path in decided and path not in known and (digest := digests.get(path)) is not None:
            pending.based(path, digest)
    return decided


def _run(extractor: _Extractor, stored: StoredArchive) -> ExtractReport:
    """One archive through EXTRACTOR, its stored bytes checked at the end."""
    with stored.open() as archive:
        source = Source(archive.tar)
        try:
            reader = TarReader(source)
            while (member := reader.next()) is not None:
                extractor.member(member, source)
            source.drain()
            report = extractor.finish(defer_dirs=True)
        finally:
            source.close()
        sha256, _ = archive.finish()
    errors = stored_mismatch(sha256, stored.sha256, stored.sidecar())
    if errors:
        raise ArchiveError(f"backup {stored.backup_id}: {'; '.join(errors)}")
    return report


def _listed(extractor: _Extractor) -> set[str]:
    """Paths an archive decided: the ones it wrote, and the ones it deleted."""
    if extractor.manifest is None or extractor.comparison is None:  # finish() refused it
        raise ArchiveError("manifest.json is missing")
    return extractor.comparison.listed | set(extractor.manifest.deleted)
