"""Create one backup of an app: dumps → one tar stream → compression →
optional encryption → SHA-256 → atomic write, with the sha256sum sidecar.

Memory stays bounded whatever the data size: every stage is a stream.
Nothing appears under the final name unless every stage succeeded, and the
archive appears only with its sidecar; the caller marks its snapshot
completed only after this returns.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker

from engine.age import AgeWriter
from engine.archive.entry_log import ArchiveSummary
from engine.archive.layout import (
    CONFIG_DIR,
    CONTAINERS_JSON,
    FORMAT_NAME,
    FORMAT_VERSION,
    archive_suffix,
)
from engine.archive.manifest import Manifest
from engine.archive.writer import ArchiveWriter
from engine.compression import Compression, open_compressor
from engine.database_detection import undumped_warnings
from engine.errors import DatabaseDumpError, ObjectNotFound, StorageError, VolumeNotFound
from engine.hashing import HashingWriter, sidecar_text
from engine.incremental.chain import ChainLink, ChainStart, start_chain
from engine.inventory import AppInfo, DatabaseInfo
from engine.output_thread import OutputThread
from engine.progress import Progress, ProgressCallback, no_progress
from engine.quiesce import ConsistencyMode, quiesced
from engine.recreate.record import app_record, record_bytes
from engine.restore.database_volumes import database_volumes_of
from engine.secret import Secret
from engine.steps import StepGuard, no_guard
from storage.base import AtomicWriter, ObjectInfo, Storage


@dataclass(frozen=True)
class BackupOptions:
    compression: Compression = "zstd"
    compression_level: int | None = None
    compression_threads: int = -1  # zstd workers; -1 = one per core
    recipients: tuple[str, ...] = ()  # age1... public keys
    passphrase: Secret | None = None
    consistency: ConsistencyMode = "live"
    include_databases: bool = True
    include_config: bool = True
    # Where each snapshot's index is kept (engine.incremental.index); None: none kept.
    index_dir: Path | None = None
    # Set: an incremental against this parent (its index must be in index_dir).
    chain: ChainLink | None = None

    @property
    def encrypted(self) -> bool:
        return bool(self.recipients) or self.passphrase is not None


@dataclass
class BackupResult:
    storage_key: str
    sidecar_key: str
    size_bytes: int
    sha256: str
    encrypted: bool
    consistency: str
    contents: dict[str, Any] = field(default_factory=dict)
    # Database data copied as raw live files, with what to do about it.
    warnings: list[str] = field(default_factory=list)
    kind: str = "full"
    chain: ChainLink | None = None  # the parent of an incremental
    bytes_written: int = 0  # file bytes this archive holds (volumes, dumps, config)
    bytes_full: int = 0  # what a full backup of the same state would have held


DumpFunction = Callable[[docker.DockerClient, DatabaseInfo, Path, ProgressCallback], Sequence[Any]]


def archive_key(app_id: str, backup_id: str, compression: Compression, encrypted: bool) -> str:
    return f"{app_id}/{backup_id}{archive_suffix(compression, encrypted)}"


def _default_dump() -> DumpFunction:
    from engine.dumps import dump_database  # imported late: optional heavy module

    return dump_database


def create_backup(
    *,
    client: docker.DockerClient,
    app: AppInfo,
    backup_id: str,
    storage: Storage,
    options: BackupOptions,
    spool_dir: Path,
    progress: ProgressCallback = no_progress,
    dump_database: DumpFunction | None = None,
    guard: StepGuard = no_guard,
) -> BackupResult:
    """GUARD is called before the app's containers are paused or stopped
    (consistency pause/stop): see engine.steps."""
    for volume in app.volumes:
        if not Path(volume.mountpoint).is_dir():
            raise VolumeNotFound(
                f"volume {volume.name} of app {app.app_id} has no data at {volume.mountpoint}"
                " (removed, or this worker does not run on the app's Docker host)"
            )
    spool = spool_dir / backup_id
    spool.mkdir(parents=True, exist_ok=False, mode=0o700)
    try:
        dumps: list[Any] = []
        if options.include_databases and app.databases:
            dump = dump_database or _default_dump()
            for database in app.databases:
                progress(Progress("dumping", detail=database.container.name))
                try:
                    dumps.extend(dump(client, database, spool, progress))
                except DatabaseDumpError as exc:
                    if database.detected_by.startswith("detected "):
                        # Taken for a database by its signals, not its image: say why.
                        exc.args = (
                            f"{exc} ({database.container.name}: {database.detected_by}; if it "
                            "is no database to dump, set database_overrides "
                            f'{{"{database.container.service}": {{"skip": true}}}})',
                        )
                    raise
        return _write_archive(
            client, app, backup_id, storage, options, dumps, progress, spool, guard
        )
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _write_archive(
    client: docker.DockerClient,
    app: AppInfo,
    backup_id: str,
    storage: Storage,
    options: BackupOptions,
    dumps: list[Any],
    progress: ProgressCallback,
    spool: Path,
    guard: StepGuard,
) -> BackupResult:
    key = archive_key(app.app_id, backup_id, options.compression, options.encrypted)
    chain = None
    if options.index_dir is not None:
        chain = start_chain(options.index_dir, app.app_id, backup_id, options.chain)
    try:
        result = _write_chained(
            client, app, backup_id, storage, options, dumps, progress, spool, guard, key, chain
        )
    except BaseException:
        if chain is not None:
            chain.index.abort()
        raise
    finally:
        if chain is not None and chain.parent is not None:
            chain.parent.close()
    if chain is not None:
        # After the archive and its sidecar: an index names only stored snapshots.
        chain.index.commit()
    return result


def _write_chained(
    client: docker.DockerClient,
    app: AppInfo,
    backup_id: str,
    storage: Storage,
    options: BackupOptions,
    dumps: list[Any],
    progress: ProgressCallback,
    spool: Path,
    guard: StepGuard,
    key: str,
    chain: ChainStart | None,
) -> BackupResult:
    link = chain.link if chain is not None else None
    parent = chain.parent if chain is not None else None
    info = _backup_info(app, backup_id, options, dumps, link)
    if chain is not None and chain.warning:
        info["warnings"].append(chain.warning)
    known_sizes = [v.size_bytes for v in app.volumes]
    total = None if None in known_sizes else sum(known_sizes) + sum(d.size for d in dumps)  # type: ignore[arg-type]
    manifest = Manifest(backup_id=backup_id)
    if link is not None:
        manifest.kind, manifest.parent_backup_id = "incremental", link.parent_backup_id
    with storage.open_writer(key) as sink:
        hasher = HashingWriter(sink)
        encryptor = _open_encryptor(hasher, options)
        # Encryption, the stored bytes' SHA-256 and the write run on their own
        # thread: the thread feeding the compressor is busy hashing files.
        output = OutputThread(encryptor or hasher)
        compressor = open_compressor(
            output, options.compression, options.compression_level, options.compression_threads
        )
        writer = ArchiveWriter(
            compressor, manifest, progress, total, spill_dir=spool,
            index=chain.index if chain is not None else None, parent=parent,
        )  # fmt: skip
        try:
            try:
                _write_members(writer, client, app, options, info, dumps, progress, total, guard)
                if parent is not None:
                    manifest.deleted = parent.deleted()
            except BaseException:
                writer.abandon()
                raise
            writer.close()
            compressor.close()
            output.close()
        except BaseException:
            output.abandon()  # before the sink is aborted under it
            raise
        if encryptor is not None:
            encryptor.close()
        # Every stored byte went through the hasher: the digest is final.
        sha256 = hasher.hexdigest()
        sidecar_key = f"{key}.sha256"
        stored = _commit_with_sidecar(storage, sink, key, sidecar_key, sha256)
    progress(Progress("stored", stored.size, stored.size))
    result = BackupResult(
        storage_key=key,
        sidecar_key=sidecar_key,
        size_bytes=stored.size,
        sha256=sha256,
        encrypted=options.encrypted,
        consistency=options.consistency,
        contents=_contents(writer.summary, manifest.skipped, info),
        warnings=list(info["warnings"]) + changed_warnings(writer.summary),
        kind=manifest.kind,
        chain=link,
        bytes_written=writer.bytes_read - writer.bytes_spared_by_deltas,
        bytes_full=writer.bytes_read + (parent.carried_bytes if parent is not None else 0),
    )
    if parent is not None:
        result.contents["unchanged_files"] = parent.carried_files
        result.contents["deleted_paths"] = len(manifest.deleted)
    return result


def _commit_with_sidecar(
    storage: Storage, sink: AtomicWriter, key: str, sidecar_key: str, sha256: str
) -> ObjectInfo:
    """Make the archive and its sidecar visible together, or neither.

    The sidecar is committed first, while the archive is still a temp file: a
    failure there (disk full) aborts both and leaves nothing under a final
    name. Then the archive is committed; if that fails, the sidecar goes
    again. An archive under its final name therefore always has its sidecar;
    a crash between the two commits leaves at most the small sidecar, under
    the key the caller recorded for this backup."""
    try:
        with storage.open_writer(sidecar_key) as sidecar:
            sidecar.write(sidecar_text(sha256, key.rsplit("/", 1)[-1]).encode())
            sidecar.commit()
    except StorageError as exc:
        raise _not_kept(exc, key, " (nothing was stored)") from exc
    try:
        return sink.commit()
    except BaseException as exc:
        note = " (nothing was stored)"
        try:
            storage.delete(sidecar_key)
        except ObjectNotFound:
            pass
        except StorageError as cleanup:
            note = f"; its sidecar {sidecar_key} could not be removed: {cleanup}"
        if isinstance(exc, StorageError):
            raise _not_kept(exc, key, note) from exc
        raise


def _not_kept(exc: StorageError, key: str, note: str) -> StorageError:
    """EXC, of the same type, saying what became of the archive."""
    return type(exc)(f"{exc}; the archive {key} was not kept{note}")


def _write_members(
    writer: ArchiveWriter,
    client: docker.DockerClient,
    app: AppInfo,
    options: BackupOptions,
    info: dict[str, Any],
    dumps: list[Any],
    progress: ProgressCallback,
    total: int | None,
    guard: StepGuard,
) -> None:
    writer.add_backup_json(info)
    if app.containers:  # volumes only: nothing to recreate, restored as before
        # Second, so a restore on another host reads it without the data; the
        # containers' environment (secrets) is in it: in the archive only.
        writer.add_bytes(CONTAINERS_JSON, record_bytes(app_record(client, app)), 0o600)
    # The dumps before the volumes: a restore loads them while it extracts
    # the volumes (engine.restore.shadow_loads).
    for dump in dumps:
        writer.add_file(dump.archive_name, dump.path)
    progress(Progress("archiving", 0, total, detail=f"volumes ({options.consistency})"))
    with quiesced(client, app, options.consistency, guard):
        for volume in app.volumes:
            writer.add_volume(volume.name, Path(volume.mountpoint))
    if options.include_config:
        for config in app.config_files:
            writer.add_file(f"{CONFIG_DIR}/{config.archive_name}", Path(config.path))


def _open_encryptor(out: HashingWriter, options: BackupOptions) -> Any:
    if not options.encrypted:
        return None
    return AgeWriter(out, recipients=options.recipients, passphrase=options.passphrase)


def _backup_info(
    app: AppInfo, backup_id: str, options: BackupOptions, dumps: list[Any],
    link: ChainLink | None = None,
) -> dict[str, Any]:  # fmt: skip
    """backup.json: what is inside, readable without our software."""
    if options.recipients:
        encryption: dict[str, Any] = {"type": "age-x25519", "recipients": list(options.recipients)}
    elif options.passphrase is not None:
        encryption = {"type": "age-scrypt"}
    else:
        encryption = {"type": "none"}
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "backup_id": backup_id,
        "app_id": app.app_id,
        "kind": "full" if link is None else "incremental",
        # An incremental names its parent and the parent archive's SHA-256:
        # a restore checks each link of the chain against these.
        "parent_backup_id": link.parent_backup_id if link else None,
        "parent_sha256": link.parent_sha256 if link else None,
        "chain_position": link.position if link else 0,
        "created_at": datetime.now(UTC).isoformat(),
        "host": socket.gethostname(),
        "compression": options.compression,
        "encryption": encryption,
        "consistency": options.consistency,
        "containers": [
            {"name": c.name, "service": c.service, "image": c.image, "state": c.state}
            for c in app.containers
        ],
        "volumes": [{"name": v.name, "labels": v.labels} for v in app.volumes],
        # So a restore leaves them alone even once their container is gone.
        "database_volumes": database_volumes_of(app),
        "databases": [d.to_json() for d in dumps],
        "config_files": [c.archive_name for c in app.config_files]
        if options.include_config
        else [],
        # Why each container was taken for a database (image, signals, override).
        "detection": [
            {"container": d.container.name, "service": d.container.service, "engine": d.engine,
             "detected_by": d.detected_by}
            for d in app.databases
        ] if options.include_databases else [],
        "warnings": undumped_warnings(
            app, consistency=options.consistency, include_databases=options.include_databases
        ),
    }  # fmt: skip


def _contents(
    summary: ArchiveSummary, skipped: list[dict[str, str]], info: dict[str, Any]
) -> dict[str, Any]:
    """The snapshot's summary of what is inside, counted while writing."""
    volumes = {
        v["name"]: dict(summary.volumes.get(v["name"], {"files": 0, "bytes": 0}))
        for v in info["volumes"]
    }
    return {
        "volumes": volumes,
        "databases": info["databases"],
        "config_files": info["config_files"],
        "detection": info["detection"],
        "file_count": sum(v["files"] for v in volumes.values()),
        "total_bytes": sum(v["bytes"] for v in volumes.values())
        + sum(d.get("size", 0) for d in info["databases"]),
        "skipped": skipped[:100],
        "changed_during_read": summary.changed_during_read,
        "changed_files": list(summary.changed_files),  # the first 100 (see the warning)
    }


def changed_warnings(summary: ArchiveSummary) -> list[str]:
    """A warning when files changed while being read. Warnings are logged, and
    file names are the app's data: the names go in contents.changed_files."""
    count = summary.changed_during_read
    if not count:
        return []
    return [
        f"{count} file(s) changed while the backup read them (written to, replaced or changed "
        "type; listed in contents.changed_files): their copy may be inconsistent. A backup "
        "with consistency pause or stop reads them while the app is not running."
    ]
