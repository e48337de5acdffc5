"""Reads for the dashboard: every app's state from a handful of aggregate
queries over snapshots, runs and schedules (never one query per app, never
Docker: the web process shows what the database knows).

An app is any app id seen in a snapshot, run or schedule row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from schedules.models import Schedule
from schedules.timing import Timing, next_due, period_before, previous_due
from snapshots.models import Run, Snapshot

COMPLETED = Snapshot.Status.COMPLETED
FAILED = Snapshot.Status.FAILED


@dataclass
class LastBackup:
    backup_id: str
    status: str
    created_at: datetime
    size_bytes: int | None
    error: str


@dataclass
class LastVerify:
    state: str
    valid: bool | None
    created_at: datetime
    deep: bool


@dataclass
class AppRow:
    app_id: str
    host_id: str
    snapshots: int = 0  # completed ones
    storage_bytes: int = 0
    last_success_at: datetime | None = None
    last: LastBackup | None = None
    last_verify: LastVerify | None = None
    next_run_at: datetime | None = None
    chain_length: int = 0  # the last completed snapshot and its parents
    warnings: list[str] = field(default_factory=list)

    @property
    def level(self) -> str:
        """danger (no backup, last failed), warning (others), ok."""
        if self.last is None or self.last.status == FAILED or self.last_success_at is None:
            return "danger"
        return "warning" if self.warnings else "ok"


# row(app_id, host_id=""): the app's row, created on first sight.
RowFor = Callable[..., "AppRow"]


@dataclass(frozen=True)
class Dashboard:
    apps: list[AppRow]
    locations: list[tuple[str, int, int]]  # name, snapshots, bytes
    now: datetime


def dashboard(now: datetime | None = None) -> Dashboard:
    moment = now or timezone.now()
    rows: dict[str, AppRow] = {}

    def row(app_id: str, host_id: str = "") -> AppRow:
        found = rows.get(app_id)
        if found is None:
            found = rows[app_id] = AppRow(app_id, host_id or settings.BACKUP_HOST_ID)
        return found

    locations = _storage(row)
    _last_backups(row)
    _last_verifies(row)
    _chains(rows)
    for app_id in Run.objects.order_by().values_list("app_id", flat=True).distinct():
        row(app_id)
    _schedules(row, moment)
    for app in rows.values():
        app.warnings = _warnings(app, moment) + app.warnings
    apps = sorted(rows.values(), key=lambda a: (_rank(a), a.app_id))
    return Dashboard(apps, locations, moment)


def _rank(app: AppRow) -> int:
    return {"danger": 0, "warning": 1, "ok": 2}[app.level]


def _storage(row: RowFor) -> list[tuple[str, int, int]]:
    """One grouped scan of completed snapshots (app x location): the
    per-app counts and sizes, last success and the per-location totals."""
    groups = (
        Snapshot.objects.filter(status=COMPLETED)
        .order_by()
        .values_list("app_id", "host_id", "storage_location")
        .annotate(count=Count("id"), size=Sum("size_bytes"), last=Max("created_at"))
    )
    per_location: dict[str, list[int]] = {}
    for app_id, host_id, location, count, size, last in groups:
        app = row(app_id, host_id)
        app.snapshots += count
        app.storage_bytes += size or 0
        if app.last_success_at is None or last > app.last_success_at:
            app.last_success_at = last
        bucket = per_location.setdefault(location, [0, 0])
        bucket[0] += count
        bucket[1] += size or 0
    return [(name, count, size) for name, (count, size) in sorted(per_location.items())]


def _last_backups(row: RowFor) -> None:
    """Each app's newest backup (not a restore's safety backup): the newest
    created_at per app (the (app_id, -created_at) index), joined back."""
    table = Snapshot._meta.db_table
    sql = f"""
        SELECT s.app_id, s.host_id, s.backup_id, s.status, s.created_at, s.size_bytes, s.error
        FROM {table} s JOIN (
            SELECT app_id, MAX(created_at) AS newest FROM {table}
            WHERE purpose <> %s GROUP BY app_id
        ) l ON s.app_id = l.app_id AND s.created_at = l.newest
        WHERE s.purpose <> %s ORDER BY s.id
    """  # noqa: S608 (the table name is ours, values are parameters)
    with connection.cursor() as cursor:
        cursor.execute(sql, [Snapshot.Purpose.PRE_RESTORE, Snapshot.Purpose.PRE_RESTORE])
        for app_id, host_id, backup_id, status, created_at, size, error in cursor.fetchall():
            row(app_id, host_id).last = LastBackup(
                backup_id, status, _aware(created_at), size, error
            )


def _last_verifies(row: RowFor) -> None:
    table = Run._meta.db_table
    sql = f"""
        SELECT r.app_id, r.state, r.result, r.options, r.created_at
        FROM {table} r JOIN (
            SELECT app_id, MAX(created_at) AS newest FROM {table}
            WHERE operation = %s AND state IN (%s, %s) GROUP BY app_id
        ) l ON r.app_id = l.app_id AND r.created_at = l.newest
        WHERE r.operation = %s
    """  # noqa: S608
    verify = Run.Operation.VERIFY
    params = [verify, Run.State.COMPLETED, Run.State.FAILED, verify]
    field_result = Run._meta.get_field("result")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for app_id, state, result, options, created_at in cursor.fetchall():
            result = field_result.from_db_value(result, None, connection) or {}
            options = field_result.from_db_value(options, None, connection) or {}
            valid = result.get("valid") if state == Run.State.COMPLETED else False
            row(app_id).last_verify = LastVerify(
                state, valid, _aware(created_at), bool(options.get("deep") or result.get("deep"))
            )


def _chains(rows: dict[str, AppRow]) -> None:
    """The length of each app's newest completed snapshot's parent chain, in
    one recursive query (1 for a full backup)."""
    table = Snapshot._meta.db_table
    sql = f"""
        WITH RECURSIVE newest AS (
            SELECT s.app_id, s.id, s.parent_id FROM {table} s JOIN (
                SELECT app_id, MAX(created_at) AS at FROM {table}
                WHERE status = %s GROUP BY app_id
            ) l ON s.app_id = l.app_id AND s.created_at = l.at WHERE s.status = %s
        ), chain(app_id, id, parent_id, depth) AS (
            SELECT app_id, id, parent_id, 1 FROM newest
            UNION ALL
            SELECT c.app_id, p.id, p.parent_id, c.depth + 1
            FROM {table} p JOIN chain c ON p.id = c.parent_id WHERE c.depth < 1000
        )
        SELECT app_id, MAX(depth) FROM chain GROUP BY app_id
    """  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [COMPLETED, COMPLETED])
        for app_id, depth in cursor.fetchall():
            if app_id in rows:
                rows[app_id].chain_length = depth


def _schedules(row: RowFor, now: datetime) -> None:
    """Next run (the earliest of the app's enabled schedules) and overdue
    schedules: a due time past the grace with no completed backup since the
    period before it (the missed-backup alarm's rule, over any location)."""
    grace = timedelta(seconds=settings.BACKUP_MISSED_GRACE_SECONDS)
    for schedule in Schedule.objects.filter(enabled=True).order_by("app_id", "id"):
        app = row(schedule.app_id, schedule.host_id)
        try:
            timing = Timing.of(schedule)
            upcoming = next_due(timing, now)
            due = previous_due(timing, now)
        except ValueError:  # an invalid timetable cannot be saved; never break the page
            app.warnings.append(f"schedule {schedule.pk} has an invalid timetable")
            continue
        if upcoming and (app.next_run_at is None or upcoming < app.next_run_at):
            app.next_run_at = upcoming
        if due is None or due < schedule.created_at or now < due + grace:
            continue
        threshold = min(due - period_before(timing, due) + grace, due)
        if app.last_success_at is None or app.last_success_at <= threshold:
            app.warnings.append(f"schedule {schedule.pk} overdue (due {due:%Y-%m-%d %H:%M} UTC)")


def _warnings(app: AppRow, now: datetime) -> list[str]:
    found: list[str] = []
    if app.last is None:
        found.append("no backup")
    elif app.last.status == FAILED:
        found.append("last backup failed")
    if app.last_success_at is None and app.last is not None:
        found.append("no completed backup")
    if app.last_success_at is not None:
        verify = app.last_verify
        if verify is None or verify.created_at < app.last_success_at:
            found.append("unverified")
        elif verify.valid is False:
            found.append("last verification failed")
    return found


def _aware(moment: datetime) -> datetime:
    """Raw SQL gives naive datetimes on SQLite (UTC)."""
    return timezone.make_aware(moment, timezone.UTC) if timezone.is_naive(moment) else moment


# -- one app ---------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    at: datetime
    size_bytes: int
    duration_seconds: float | None


def backup_history(app_id: str, limit: int = 60) -> list[Point]:
    """APP_ID's newest LIMIT completed backups, oldest first (for its charts)."""
    rows = (
        Snapshot.objects.filter(app_id=app_id, status=COMPLETED)
        .order_by("-created_at")
        .values_list("created_at", "size_bytes", "started_at", "finished_at")[:limit]
    )
    points = [
        Point(at, size or 0, (end - start).total_seconds() if start and end else None)
        for at, size, start, end in rows
    ]
    return points[::-1]


def recent_snapshots(app_id: str, limit: int = 20) -> list[Snapshot]:
    return list(
        Snapshot.objects.filter(app_id=app_id).defer("contents").order_by("-created_at")[:limit]
    )


def recent_runs(app_id: str, limit: int = 10) -> list[Run]:
    return list(
        Run.objects.filter(app_id=app_id)
        .select_related("snapshot")
        .defer("journal", "snapshot__contents")
        .order_by("-created_at")[:limit]
    )


def is_known_app(app_id: str) -> bool:
    return (
        Snapshot.objects.filter(app_id=app_id).exists()
        or Run.objects.filter(app_id=app_id).exists()
        or Schedule.objects.filter(Q(app_id=app_id)).exists()
    )
