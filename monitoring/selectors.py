"""The reads behind GET /metrics: a handful of grouped queries over the
snapshots, runs, firings and notifications tables, so a scrape costs the
same number of queries for 5 apps or 5,000 (tests/monitoring checks it).

Everything comes from the database, never from counters in this process:
every web process answers a scrape alike, and a restarted one forgets
nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum, Window
from django.db.models.functions import RowNumber

from schedules.models import Notification, ScheduleFiring
from snapshots.models import Run, Snapshot
from snapshots.selectors_offsite import location_usage
from snapshots.storage_locations import backend_names


@dataclass(frozen=True)
class LastBackup:
    app_id: str
    host_id: str
    finished_at: datetime
    size_bytes: int | None
    duration_seconds: float | None


@dataclass(frozen=True)
class RunTotals:
    app_id: str
    host_id: str
    operation: str
    state: str
    count: int
    seconds: float  # summed over the runs with a start and an end


@dataclass(frozen=True)
class ScheduleMisses:
    schedule_id: int
    app_id: str
    reason: str  # skipped (busy past the wait) or missed (the alarm fired)
    count: int


@dataclass(frozen=True)
class StorageTotals:
    location: str
    snapshots: int
    size_bytes: int
    free_bytes: int | None


def last_backups() -> list[LastBackup]:
    """Each (app, host)'s newest completed snapshot: one windowed query. The
    columns are narrowed before the window: without it the inner query reads
    every column (contents, warnings) of every completed row, 1.7 times slower
    at 100,000 rows (bench/bench_metrics.py)."""
    rows = (
        Snapshot.objects.filter(status=Snapshot.Status.COMPLETED, finished_at__isnull=False)
        .values("app_id", "host_id", "finished_at", "started_at", "size_bytes")
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("app_id"), F("host_id")],
                order_by=[F("finished_at").desc(), F("id").desc()],
            )
        )
        .filter(rank=1)
        .order_by()
        .values_list("app_id", "host_id", "finished_at", "started_at", "size_bytes")
    )
    return [
        LastBackup(
            app, host, finished, size, (finished - started).total_seconds() if started else None
        )
        for app, host, finished, started, size in rows
    ]


def run_totals() -> list[RunTotals]:
    """Finished runs (completed, failed) per app, host, operation and state,
    with their summed durations: one grouped query."""
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    timed = Q(started_at__isnull=False, finished_at__isnull=False)
    rows = (
        Run.objects.filter(state__in=[Run.State.COMPLETED, Run.State.FAILED])
        .order_by()
        .values_list("app_id", "host_id", "operation", "state")
        .annotate(count=Count("id"), seconds=Sum(duration, filter=timed))
    )
    return [
        RunTotals(app, host, op, state, count, seconds.total_seconds() if seconds else 0.0)
        for app, host, op, state, count, seconds in rows
    ]


def schedule_misses() -> list[ScheduleMisses]:
    """Per schedule: firings skipped (the app stayed busy past the wait) and
    missed-backup alarms told (no completed backup in time): two queries."""
    skipped = (
        ScheduleFiring.objects.filter(state=ScheduleFiring.State.SKIPPED)
        .order_by()
        .values_list("schedule_id", "schedule__app_id")
        .annotate(count=Count("id"))
    )
    missed = (
        Notification.objects.filter(event=Notification.Event.BACKUP_MISSED, schedule__isnull=False)
        .order_by()
        .values_list("schedule_id", "app_id")
        .annotate(count=Count("id"))
    )
    return [ScheduleMisses(s, a, "skipped", n) for s, a, n in skipped] + [
        ScheduleMisses(s, a, "missed", n) for s, a, n in missed
    ]


def storage_totals() -> list[StorageTotals]:
    """Bytes and snapshots held by each backend (`local`, each S3 location),
    as GET /storage counts them; compounds (`local+s3`) are not repeated,
    their bytes are in both backends already."""
    backends = set(backend_names())
    return [
        StorageTotals(e["name"], e["snapshots"], e["size_bytes"], e["free_bytes"])
        for e in location_usage()
        if e["name"] in backends
    ]
