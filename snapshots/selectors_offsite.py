"""Reads about where snapshots' copies are: a snapshot's copies, the
`storage_location` filter, and storage usage per location."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum

from engine.errors import EngineError
from snapshots.models import Snapshot
from snapshots.models_offsite import OffsiteCopy
from snapshots.storage_locations import (
    COMPOUND_SEPARATOR,
    LOCAL,
    backend_names,
    get_backend,
    storage_names,
)


def completed_snapshots(host_id: str | None = None) -> QuerySet[Snapshot]:
    """The completed snapshots, only HOST_ID's when given."""
    rows = Snapshot.objects.filter(status=Snapshot.Status.COMPLETED)
    return rows if host_id is None else rows.filter(host_id=host_id)


def disk_is_here(location: str, host_id: str | None) -> bool:
    """Whether this process can tell LOCATION's free space for HOST_ID's
    snapshots: S3 has one bucket for every host, but `local` (and a compound
    writing there first) is the disk of each host, and this process sees
    only its own host's (settings.BACKUP_HOST_ID)."""
    writes_locally = location.split(COMPOUND_SEPARATOR)[0] == LOCAL
    return host_id is None or host_id == settings.BACKUP_HOST_ID or not writes_locally


def where(snapshot: Snapshot) -> list[dict[str, Any]]:
    """Where SNAPSHOT's copies are: the local one if its file is there, and
    each off-site copy with its state (pending, uploading, verified, failed)."""
    copies: list[dict[str, Any]] = []
    if snapshot.storage_key and snapshot.status == Snapshot.Status.COMPLETED:
        try:
            if get_backend(LOCAL).exists(snapshot.storage_key):
                copies.append({"location": LOCAL, "state": "stored"})
        except (EngineError, ValueError):
            pass
    for copy in OffsiteCopy.objects.filter(snapshot=snapshot).order_by("location"):
        copies.append({
            "location": copy.location, "state": copy.state, "bytes_done": copy.bytes_done,
            "error": copy.error,
            "verified_at": copy.verified_at.isoformat() if copy.verified_at else None,
        })  # fmt: skip
    return copies


def location_filter(location: str) -> Q:
    """Snapshots stored at LOCATION: a compound (`local+s3`) exactly; a
    backend's name (`local`, `s3`) also takes the compounds it is part of,
    since they keep a copy there."""
    if COMPOUND_SEPARATOR in location:
        return Q(storage_location=location)
    return (
        Q(storage_location=location)
        | Q(storage_location__startswith=f"{location}{COMPOUND_SEPARATOR}")
        | Q(storage_location__endswith=f"{COMPOUND_SEPARATOR}{location}")
    )


def _sums(rows: Any) -> tuple[int, int]:
    totals = rows.aggregate(count=Count("id"), size=Sum("size_bytes"))
    return totals["count"] or 0, totals["size"] or 0


def _local_usage(completed: Any) -> tuple[int, int]:
    """Completed snapshots with a local copy: those that keep one, and those
    off-site only whose copies are not all verified yet (still staged)."""
    keeps = completed.filter(location_filter(LOCAL))
    staged = (
        completed.exclude(location_filter(LOCAL))
        .filter(offsite_copies__isnull=False)
        .exclude(offsite_copies__state=OffsiteCopy.State.VERIFIED)
        .distinct()
    )
    a, b = _sums(keeps), _sums(Snapshot.objects.filter(pk__in=staged.values("pk")))
    return a[0] + b[0], a[1] + b[1]


def location_usage(host_id: str | None = None) -> list[dict[str, Any]]:
    """Every location: each backend with the snapshots that have a copy
    there (an off-site copy counts once verified), then each other
    storage_location the rows name (compounds like `local+s3`, and
    locations no longer configured) with the snapshots stored so.
    HOST_ID: only the snapshots that host made (the local disk's free space
    only where it is this host's: disk_is_here)."""
    completed = completed_snapshots(host_id)
    local_free = get_backend(LOCAL).free_bytes() if disk_is_here(LOCAL, host_id) else None
    entries: dict[str, dict[str, Any]] = {}
    for name in backend_names():
        if name == LOCAL:
            count, size = _local_usage(completed)
        else:
            count, size = _sums(
                OffsiteCopy.objects.filter(
                    location=name, state=OffsiteCopy.State.VERIFIED,
                    snapshot__status=Snapshot.Status.COMPLETED,
                    **({} if host_id is None else {"snapshot__host_id": host_id}),
                )
            )  # fmt: skip
        free = local_free if name == LOCAL else get_backend(name).free_bytes()
        entries[name] = {"name": name, "configured": True, "snapshots": count,
                         "size_bytes": size, "free_bytes": free}  # fmt: skip
    configured = storage_names()
    groups = (
        completed.exclude(storage_location__in=list(entries))
        .order_by()
        .values_list("storage_location")
        .annotate(count=Count("id"), size=Sum("size_bytes"))
    )
    for location, count, size in groups:
        known = location in configured
        entries[location] = {
            "name": location, "configured": known, "snapshots": count, "size_bytes": size or 0,
            # A compound writes to the local disk first.
            "free_bytes": local_free if known else None,
        }  # fmt: skip
    for name in configured:
        entries.setdefault(
            name, {"name": name, "configured": True, "snapshots": 0, "size_bytes": 0,
                   "free_bytes": local_free},
        )  # fmt: skip
    return [entries[name] for name in sorted(entries)]
