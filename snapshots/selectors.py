"""Reads: snapshot lists, storage usage, apps and task state.

Every lookup by an id from outside checks the id's shape first, so junk
(`../etc/passwd`, 10 kB of text) never reaches a query, a path or Docker."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Max, QuerySet, Sum

from drills.selectors import with_last_drill
from engine.discovery import validate_app_id
from engine.errors import AppNotFound, ObjectNotFound
from engine.inventory import ConfigFile, ContainerInfo, VolumeInfo
from fleet.errors import AppOnManyHosts, UnknownHost
from fleet.inventory_store import StoredDatabase
from fleet.selectors import HostedApp, HostState, hosted_apps, locate_app
from snapshots.models import Run, Snapshot
from snapshots.selectors_offsite import completed_snapshots, disk_is_here, location_filter
from snapshots.storage_locations import get_storage, storage_names
from storage.base import Storage

BACKUP_ID = re.compile(r"backup_\d{8}_\d{6}_[0-9a-f]{6}")
# Stable order: equal created_at or size_bytes never make a row appear on two pages.
SORTS: dict[str, tuple[Any, ...]] = {
    "created_at": (F("created_at").asc(), F("id").asc()),
    "-created_at": (F("created_at").desc(), F("id").desc()),
    "size_bytes": (F("size_bytes").asc(nulls_last=True), F("id").asc()),
    "-size_bytes": (F("size_bytes").desc(nulls_last=True), F("id").desc()),
}
DEFAULT_SORT = "-created_at"
TERMINAL_STATES = (Run.State.COMPLETED, Run.State.FAILED)


class NotFound(LookupError):
    """No such thing (or an id that cannot name one); the message says which."""


class Conflict(Exception):
    """The thing exists but is not in a state for this (e.g. a failed snapshot
    has no archive to download)."""


# -- snapshots -------------------------------------------------------------------


def validate_backup_id(backup_id: str) -> str:
    if not isinstance(backup_id, str) or not BACKUP_ID.fullmatch(backup_id):
        raise NotFound("not a backup id: expected backup_YYYYMMDD_HHMMSS_xxxxxx")
    return backup_id


def get_snapshot(backup_id: str) -> Snapshot:
    validate_backup_id(backup_id)
    snapshot = Snapshot.objects.select_related("parent").filter(backup_id=backup_id).first()
    if snapshot is None:
        raise NotFound(f"no snapshot {backup_id}")
    return snapshot


@dataclass(frozen=True)
class SnapshotFilters:
    app_id: str | None = None
    status: str | None = None
    kind: str | None = None
    purpose: str | None = None
    storage_location: str | None = None
    host_id: str | None = None  # the host whose worker made them

    def apply(self, rows: QuerySet[Snapshot]) -> QuerySet[Snapshot]:
        wanted = {name: value for name, value in self.__dict__.items() if value is not None}
        location = wanted.pop("storage_location", None)
        rows = rows.filter(**wanted)
        # `s3` also lists `local+s3` snapshots (they have a copy there too).
        return rows if location is None else rows.filter(location_filter(location))


@dataclass(frozen=True)
class SnapshotPage:
    total: int
    total_size_bytes: int
    page: int
    page_size: int
    snapshots: list[Snapshot]

    @property
    def pages(self) -> int:
        return (self.total + self.page_size - 1) // self.page_size


def list_snapshots(
    filters: SnapshotFilters, sort: str = DEFAULT_SORT, page: int = 1, page_size: int = 50
) -> SnapshotPage:
    """One page of the snapshots FILTERS selects, with the count and bytes of
    all of them (not just the page). A page past the end is empty."""
    if sort not in SORTS or page < 1 or page_size < 1:
        raise ValueError("invalid sort or page")
    rows = filters.apply(Snapshot.objects.all())
    totals = rows.aggregate(total=Count("id"), size=Sum("size_bytes"))
    start = (page - 1) * page_size
    items = list(
        with_last_drill(rows.annotate(parent_backup_id=F("parent__backup_id")))
        .defer("contents")  # detail only, and the one field that can be large
        .order_by(*SORTS[sort])[start : start + page_size]
    )
    return SnapshotPage(
        total=totals["total"], total_size_bytes=totals["size"] or 0, page=page,
        page_size=page_size, snapshots=items,
    )  # fmt: skip


@dataclass(frozen=True)
class StoredArchive:
    storage: Storage
    key: str
    size: int

    @property
    def filename(self) -> str:
        return self.key.rpartition("/")[2]


def stored_archive(snapshot: Snapshot) -> StoredArchive:
    """Where SNAPSHOT's archive is and its size now; ObjectNotFound if the
    file is gone from storage."""
    if snapshot.status != Snapshot.Status.COMPLETED or not snapshot.storage_key:
        raise Conflict(
            f"snapshot {snapshot.backup_id} is {snapshot.status}; only completed snapshots "
            "have an archive"
        )
    storage = get_storage(snapshot.storage_location)
    try:
        size = storage.stat(snapshot.storage_key).size
    except ObjectNotFound:
        if snapshot.storage_location == "local" and snapshot.host_id != settings.BACKUP_HOST_ID:
            # Another host's disk (fleet): say which, rather than "gone".
            raise Conflict(
                f"snapshot {snapshot.backup_id} is stored only on the local disk of host "
                f"{snapshot.host_id}, not here (host {settings.BACKUP_HOST_ID}); download it "
                "there, or back up to S3 storage to reach it from any host"
            ) from None
        raise
    return StoredArchive(storage, snapshot.storage_key, size)


def children_of(snapshot: Snapshot) -> list[str]:
    """Backup ids of the snapshots that depend on SNAPSHOT."""
    return list(snapshot.children.order_by("created_at").values_list("backup_id", flat=True))


# -- storage ---------------------------------------------------------------------


def storage_usage(host_id: str | None = None) -> dict[str, Any]:
    """Bytes kept by completed snapshots (the database is the truth of what
    is stored: summing rows is instant where walking 100,000 files is not),
    per app and per storage location, with each location's free space;
    HOST_ID: only the snapshots that host made.

    One grouped scan (app x location) gives all three sums; with 100,000
    rows, three separate aggregates took three times as long."""
    groups = (
        completed_snapshots(host_id)
        .order_by()
        .values_list("app_id", "storage_location")
        .annotate(count=Count("id"), size=Sum("size_bytes"))
    )
    per_app: dict[str, list[int]] = {}
    per_location: dict[str, list[int]] = {}
    for app_id, location, count, size in groups:
        for bucket in (
            per_app.setdefault(app_id, [0, 0]),
            per_location.setdefault(location, [0, 0]),
        ):
            bucket[0] += count
            bucket[1] += size or 0
    configured = storage_names()
    locations = [
        {
            "name": name, "configured": name in configured,
            "snapshots": per_location.get(name, [0, 0])[0],
            "size_bytes": per_location.get(name, [0, 0])[1],
            "free_bytes": get_storage(name).free_bytes()
            if name in configured and disk_is_here(name, host_id)
            else None,
        }
        for name in sorted(set(configured) | set(per_location))
    ]  # fmt: skip
    default = next((loc for loc in locations if loc["name"] == "local"), None)
    return {
        "total_bytes": sum(size for _, size in per_app.values()),
        "snapshots": sum(count for count, _ in per_app.values()),
        "free_bytes": default["free_bytes"] if default else None,
        "apps": [
            {"app_id": app_id, "snapshots": count, "size_bytes": size}
            for app_id, (count, size) in sorted(per_app.items())
        ],
        "locations": locations,
    }


# -- apps ------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupStats:
    snapshots: int = 0
    size_bytes: int = 0
    last_backup_at: datetime | None = None
    # A host that made its snapshots: where an uninstalled app was.
    host_id: str | None = None


@dataclass(frozen=True)
class AppSummary:
    """An app as the API shows it, from its host's stored inventory (the web
    process never asks Docker). PRESENT is False for an app that has
    snapshots but is on no host any more (uninstalled): it stays listed
    because it can still be restored."""

    app_id: str
    present: bool
    backups: BackupStats
    host_id: str | None
    containers: tuple[ContainerInfo, ...] = ()
    volumes: tuple[VolumeInfo, ...] = ()
    databases: tuple[StoredDatabase, ...] = ()
    config_files: tuple[ConfigFile, ...] = ()
    working_dir: str | None = None
    host: HostState | None = None  # None for an app on no host


# An app's snapshots are counted per (app id, host id): the same app id on
# two hosts is two apps (fleet), and each one's backups are its own.
AppKey = tuple[str, str]


def backup_stats(app_id: str | None = None) -> dict[AppKey, BackupStats]:
    """Each (app, host that made them)'s completed snapshots (of APP_ID's
    only when given)."""
    rows = Snapshot.objects.filter(status=Snapshot.Status.COMPLETED).order_by()
    if app_id is not None:
        rows = rows.filter(app_id=app_id)
    grouped = rows.values("app_id", "host_id").annotate(
        count=Count("id"), size=Sum("size_bytes"), last=Max("created_at")
    )
    return {
        (row["app_id"], row["host_id"]): BackupStats(
            row["count"], row["size"] or 0, row["last"], row["host_id"]
        )
        for row in grouped
    }


def list_apps(host_id: str | None = None) -> list[AppSummary]:
    """The apps of every host's inventory (of HOST_ID's only when given), one
    per (host, app), plus the apps known only by their snapshots."""
    stats = backup_stats()
    found = hosted_apps(host_id=host_id)
    apps = [_present(hosted, stats) for hosted in found]
    apps += absent_apps(stats, {(h.app.app_id, h.host.host.id) for h in found}, host_id)
    return sorted(apps, key=lambda app: (app.app_id, app.host_id or ""))


def absent_apps(
    stats: dict[AppKey, BackupStats], present: set[AppKey], host_id: str | None = None
) -> list[AppSummary]:
    """The apps of STATS not on the inventory of the host that made their
    snapshots (not in PRESENT: uninstalled there, or moved to another host),
    made on HOST_ID when given."""
    return [
        _absent(key, stats)
        for key in sorted(stats)
        if key not in present and (host_id is None or key[1] == host_id)
    ]


def get_app_summary(app_id: str, host_id: str | None = None) -> AppSummary:
    try:
        validate_app_id(app_id)
    except AppNotFound as exc:
        raise NotFound(str(exc)) from None
    stats = backup_stats(app_id)
    try:
        return _present(locate_app(app_id, host_id), stats)
    except (AppNotFound, UnknownHost) as exc:
        made_on = [key for key in sorted(stats) if host_id is None or key[1] == host_id]
        if len(made_on) > 1:  # on no host now, backed up on several
            raise AppOnManyHosts(app_id, [host for _, host in made_on]) from None
        if made_on:
            return _absent(made_on[0], stats)
        raise NotFound(str(exc)) from None


def _absent(key: AppKey, stats: dict[AppKey, BackupStats]) -> AppSummary:
    return AppSummary(app_id=key[0], present=False, backups=stats[key], host_id=key[1])


def _present(hosted: HostedApp, stats: dict[AppKey, BackupStats]) -> AppSummary:
    app, host_id = hosted.app, hosted.host.host.id
    return AppSummary(
        app_id=app.app_id, present=True,
        backups=stats.get((app.app_id, host_id), BackupStats()),
        host_id=host_id, containers=app.containers, volumes=app.volumes,
        databases=app.databases, config_files=app.config_files, working_dir=app.working_dir,
        host=hosted.host,
    )  # fmt: skip


# -- tasks -----------------------------------------------------------------------


def get_run(task_id: str) -> Run:
    """The run a task id names (the Celery task id is the run's id)."""
    try:
        run_id = uuid.UUID(str(task_id))
    except ValueError:
        raise NotFound("not a task id: expected a UUID") from None
    run = Run.objects.select_related("snapshot").filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"no task {run_id}")
    return run


def wait_for_run(run_id: str, timeout_seconds: float, poll_seconds: float = 0.5) -> Run:
    """The run once it ended, or as it is when TIMEOUT_SECONDS have passed."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        state = Run.objects.filter(pk=run_id).values_list("state", flat=True).first()
        if state in TERMINAL_STATES:
            break
        time.sleep(min(poll_seconds, max(deadline - time.monotonic(), 0)))
    return get_run(run_id)
