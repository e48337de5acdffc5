"""Staging a restore while the app still runs: one read of the stored
archive extracts every planned volume into its staging dir beside the live
data and spools the database dumps, while the same read checks every member
against the manifest (extract_volumes), the dumps' own structure, and the
stored file's SHA-256 and decryption (StoredPass). A corrupt or undecryptable
archive is refused here, the staging dirs and spool removed: nothing the app
uses was touched, nothing was stopped.

Staging needs room for a second copy of each volume on the volume's own
filesystem (a swap is a rename). A running app must not be the one to find
its disk full: where the recorded sizes do not fit with HEADROOM_BYTES to
spare, the restore takes the old order instead (validate, stop, extract),
and says why (why_not_while_running)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from engine import steps
from engine.dumps import DumpFile, verify_dump
from engine.errors import ArchiveError, EngineError, brief
from engine.inventory import AppInfo
from engine.progress import Progress, ProgressCallback
from engine.restore.chain import extract_chain
from engine.restore.extract import extract_volumes
from engine.restore.gil_slices import short_gil_slices
from engine.restore.plan import RestorePlan
from engine.restore.shadow_loads import ShadowLoads
from engine.restore.stream import StoredPass, stored_mismatch
from engine.restore.volume_swap import discard_stage, stage_dir_for, staging_name
from engine.restore.writeback import Writeback
from engine.steps import StepGuard

logger = logging.getLogger(__name__)

HEADROOM_BYTES = 256 << 20  # left free for the running app on each filesystem
BLOCK = 4096  # a file's last block: recorded sizes count bytes, disks count blocks


class ArchiveRefused(EngineError):
    """The archive failed the checks of the staging pass; nothing was changed."""


@dataclass(frozen=True)
class StoredArchive:
    """How to read the snapshot's stored file once, and what it must hash to."""

    backup_id: str
    open: Callable[[], AbstractContextManager[StoredPass]]
    sha256: str  # the snapshot's record
    sidecar: Callable[[], str | None]  # the `.sha256` beside it, None if there is none
    tar_bytes: int | None = None  # what the snapshot recorded: the progress's total


@dataclass
class Staged:
    """What staging made: everything a refusal (or a rollback) must remove."""

    data_dirs: dict[str, Path]  # volume -> its _data
    spool_dir: Path
    stages: dict[str, Path] = field(default_factory=dict)  # volume -> staging dir
    created_volumes: list[str] = field(default_factory=list)  # made for an uninstalled app
    # Dumps loaded into shadow databases beside the staging pass (None: none).
    shadows: ShadowLoads | None = None

    def discard(self, client: docker.DockerClient | None) -> None:
        """Remove the staging dirs, the spool, the shadow databases and the
        volumes staging created. Never raises: what is left is logged
        (recovery's sweep removes it)."""
        if self.shadows is not None:
            self.shadows.cancel()
            self.shadows.drop()  # logs what it leaves
            self.shadows = None
        for name, stage in list(self.stages.items()):
            try:
                discard_stage(stage)
                del self.stages[name]
            except OSError as exc:
                logger.error("staging dir %s of volume %s left: %s", stage, name, brief(exc))
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        for name in self.created_volumes if client is not None else []:
            try:
                client.volumes.get(name).remove()
            except Exception as exc:  # the engine away: an empty labelled volume is left
                logger.warning("volume %s created by the restore left: %s", name, brief(exc))


def volume_data_dir(
    client: docker.DockerClient, app: AppInfo, name: str, backup: dict[str, Any]
) -> tuple[Path, bool]:
    """The volume's _data dir, and whether the volume was just created,
    labelled as Compose would (the app no longer has it: uninstalled)."""
    created = False
    try:
        volume = client.volumes.get(name)
    except docker.errors.NotFound:
        labels = next((v.get("labels") or {} for v in backup["volumes"] if v["name"] == name), {})
        labels = {**labels, "com.docker.compose.project": app.app_id}
        volume = client.volumes.create(name=name, labels=labels)
        created = True
    data_dir = Path(volume.attrs["Mountpoint"])
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir, created


def prepare(
    client: docker.DockerClient, app: AppInfo, plan: RestorePlan, spool_dir: Path
) -> Staged:
    """The planned volumes' data dirs (created where missing); nothing staged yet."""
    staged = Staged(data_dirs={}, spool_dir=spool_dir)
    for name in plan.raw_volumes:
        staged.data_dirs[name], created = volume_data_dir(client, app, name, plan.backup)
        if created:
            staged.created_volumes.append(name)
    return staged


def why_not_while_running(
    data_dirs: Mapping[str, Path],
    recorded: Mapping[str, Any],
    statvfs: Callable[[Path], os.statvfs_result] = os.statvfs,
) -> str | None:
    """Why the volumes cannot be staged beside their live data (None: they
    can). RECORDED is the snapshot's contents["volumes"] (name -> files,
    bytes). Volumes on one filesystem share its free space."""
    if not isinstance(recorded, Mapping):  # older rows listed names only
        recorded = {}
    need: dict[int, int] = {}
    names: dict[int, list[str]] = {}
    where: dict[int, Path] = {}
    for name, data_dir in data_dirs.items():
        sizes = recorded.get(name)
        if not isinstance(sizes, Mapping) or "bytes" not in sizes:
            return f"the size of volume {name} is not recorded in the snapshot"
        device = os.lstat(data_dir.parent).st_dev
        files = int(sizes.get("files", 0))
        need[device] = need.get(device, 0) + int(sizes["bytes"]) + files * BLOCK
        names.setdefault(device, []).append(name)
        where[device] = data_dir.parent
    for device, bytes_needed in need.items():
        stat = statvfs(where[device])
        free = stat.f_bavail * stat.f_frsize
        if free < bytes_needed + HEADROOM_BYTES:
            return (
                f"volumes {', '.join(names[device])} need {_mib(bytes_needed)} for a second "
                f"copy beside the live data and {_mib(HEADROOM_BYTES)} left for the running "
                f"app, but their filesystem has {_mib(free)} free"
            )
    return None


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB"


def stage(
    staged: Staged,
    stored: StoredArchive,
    progress: ProgressCallback,
    guard: StepGuard,
    chain: Sequence[StoredArchive] = (),
    backups: Sequence[dict[str, Any]] = (),
) -> None:
    """Extract and check in one read of STORED, into new staging dirs beside
    STAGED's data dirs and its spool dir. Raises ArchiveRefused for a bad
    archive, EngineError for anything else; either way the caller discards
    STAGED (nothing of the app's data was touched). CHAIN: STORED is an
    incremental; CHAIN its archives newest first (STORED's first, a full
    last), BACKUPS their backup.json, links checked (engine.restore.chain):
    each archive read once, each file written once."""
    names = {volume: staging_name() for volume in staged.data_dirs}
    # Journaled before they exist: a crash from here on leaves only these
    # dirs (and the spool), which the run's recovery deletes.
    guard(steps.STAGE, {"volumes": {
        volume: str(staged.data_dirs[volume].parent / name) for volume, name in names.items()
    }})  # fmt: skip
    shadows = staged.shadows
    if shadows is not None and shadows.targets:  # before any exists, as the dirs
        guard(steps.SHADOW, shadows.journal())
    on_spooled = shadows.spooled if shadows is not None else None
    for volume, name in names.items():
        staged.stages[volume] = stage_dir_for(staged.data_dirs[volume], name)
    staged.spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    progress(Progress("extracting"))
    try:
        with Writeback(staged.stages.values()) as writeback, short_gil_slices():
            if chain:
                report = extract_chain(
                    chain, backups, dict(staged.stages), spool_dir=staged.spool_dir,
                    progress=progress, on_spooled=on_spooled,
                )  # fmt: skip
                sha256 = stored.sha256  # each archive's was checked, the chain's last
            else:
                with stored.open() as archive:
                    report = extract_volumes(
                        archive.tar, dict(staged.stages), spool_dir=staged.spool_dir,
                        progress=progress, bytes_total=stored.tar_bytes, on_spooled=on_spooled,
                    )  # fmt: skip
                    sha256, _ = archive.finish()
            writeback.finish()  # on disk before the stop, not in it
    except ArchiveError as exc:  # DecryptionError included
        raise ArchiveRefused(_refused(stored, [str(exc)])) from exc
    except (EngineError, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        # zstd and gzip raise their own types on corrupt data; a failing
        # storage read is an EngineError (above), never this.
        if isinstance(exc, OSError) and not _is_codec_error(exc):
            raise EngineError(f"cannot read backup {stored.backup_id}: {brief(exc)}") from exc
        message = f"archive cannot be decompressed: {brief(exc)}"
        raise ArchiveRefused(_refused(stored, [message])) from exc
    errors = stored_mismatch(sha256, stored.sha256, stored.sidecar())
    errors += _dump_errors(report.backup, report.spooled)
    if errors:
        raise ArchiveRefused(_refused(stored, errors))


def _is_codec_error(exc: OSError) -> bool:
    # gzip.BadGzipFile is an OSError; so is zstd's "truncated input".
    return type(exc).__module__ in ("gzip", "isal.igzip", "zstandard", "zstandard.backend_c")


def _dump_errors(backup: dict[str, Any], spooled: Mapping[str, Path]) -> list[str]:
    """Each spooled dump's own structure, as deep verification checks it:
    complete by checksum, it may still have been cut short by its tool."""
    errors = []
    for entry in backup.get("databases", []):
        path = spooled.get(entry.get("archive_name", ""))
        if path is None:
            errors.append(f"dump {entry.get('archive_name')!r} listed in backup.json is missing")
            continue
        try:
            verify_dump(None, DumpFile.from_json(entry, path))
        except EngineError as exc:
            errors.append(str(exc))
    return errors


def _refused(stored: StoredArchive, errors: list[str]) -> str:
    reasons = "; ".join(errors[:3])
    return f"backup {stored.backup_id} failed validation: {reasons}"
