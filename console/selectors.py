"""Reads for the dashboard: every app's state from a handful of aggregate
queries over snapshots, runs and schedules (never one query per app, never
Docker: the web process shows what the database knows).

An app is any app id seen in a snapshot, run or schedule row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

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

    locations, newest = _totals(row)
    newest_completed = _newest_rows(rows, newest)
    _chains(rows, newest_completed)
    _last_verifies(row)
    for app_id in Run.objects.order_by().values_list("app_id", flat=True).distinct():
        row(app_id)
    _schedules(row, moment)
    for app in rows.values():
        app.warnings = _warnings(app, moment) + app.warnings
    apps = sorted(rows.values(), key=lambda a: (_rank(a), a.app_id))
    return Dashboard(apps, locations, moment)


def _rank(app: AppRow) -> int:
    return {"danger": 0, "warning": 1, "ok": 2}[app.level]


def _totals(row: RowFor) -> tuple[list[tuple[str, int, int]], dict[str, datetime]]:
    """The one scan of the snapshot table (app x host x location, filtered
    aggregates): per app the completed count and bytes and the last
    success, per location the totals, and each app's newest backup time
    (a restore's safety backup is not the app's last backup)."""
    done = Q(status=COMPLETED)
    groups = (
        Snapshot.objects.order_by()
        .values_list("app_id", "host_id", "storage_location")
        .annotate(
            count=Count("id", filter=done), size=Sum("size_bytes", filter=done),
            last_success=Max("created_at", filter=done),
            newest=Max("created_at", filter=~Q(purpose=Snapshot.Purpose.PRE_RESTORE)),
        )
    )  # fmt: skip
    per_location: dict[str, list[int]] = {}
    newest: dict[str, datetime] = {}
    for app_id, host_id, location, count, size, last_success, last in groups:
        app = row(app_id, host_id)
        app.snapshots += count
        app.storage_bytes += size or 0
        if last_success and (app.last_success_at is None or last_success > app.last_success_at):
            app.last_success_at = last_success
        if last and (app_id not in newest or last > newest[app_id]):
            newest[app_id] = last
        if count:
            bucket = per_location.setdefault(location, [0, 0])
            bucket[0] += count
            bucket[1] += size or 0
    locations = [(name, count, size) for name, (count, size) in sorted(per_location.items())]
    return locations, newest


def _newest_rows(
    rows: dict[str, AppRow], newest: dict[str, datetime]
) -> dict[str, tuple[int, int | None]]:
    """Fill each app's last backup from the rows at its newest time, and
    return each app's newest completed snapshot (id, parent id). One indexed
    query: app ids IN (...) AND created_at IN (...), the exact pairs kept."""
    wanted = {(a, t) for a, t in newest.items()}
    wanted |= {(a.app_id, a.last_success_at) for a in rows.values() if a.last_success_at}
    if not wanted:
        return {}
    found = (
        Snapshot.objects.filter(
            app_id__in={a for a, _ in wanted}, created_at__in={t for _, t in wanted}
        )
        .order_by("id")
        .values_list("id", "app_id", "backup_id", "status", "purpose", "created_at",
                     "size_bytes", "error", "parent_id")
    )  # fmt: skip
    completed: dict[str, tuple[int, int | None]] = {}
    for pk, app_id, backup_id, status, purpose, created_at, size, error, parent_id in found:
        app = rows[app_id]
        if newest.get(app_id) == created_at and purpose != Snapshot.Purpose.PRE_RESTORE:
            app.last = LastBackup(backup_id, status, created_at, size, error)
        if app.last_success_at == created_at and status == COMPLETED:
            completed[app_id] = (pk, parent_id)
    return completed


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


def _chains(rows: dict[str, AppRow], newest: dict[str, tuple[int, int | None]]) -> None:
    """The length of each app's newest completed snapshot's parent chain (1
    for a full backup); the parents are walked in one recursive query, only
    when some newest snapshot has one."""
    for app_id in newest:
        rows[app_id].chain_length = 1
    starts = [(app_id, parent) for app_id, (_pk, parent) in newest.items() if parent]
    if not starts:
        return
    table = Snapshot._meta.db_table
    marks = ", ".join(["%s"] * len(starts))
    # A parent belongs to its child's app, so the walk carries the app id along.
    sql = f"""
        WITH RECURSIVE chain(app_id, id, parent_id, depth) AS (
            SELECT s.app_id, s.id, s.parent_id, 2 FROM {table} s WHERE s.id IN ({marks})
            UNION ALL
            SELECT c.app_id, p.id, p.parent_id, c.depth + 1
            FROM {table} p JOIN chain c ON p.id = c.parent_id WHERE c.depth < 10000
        )
        SELECT app_id, MAX(depth) FROM chain GROUP BY app_id
    """  # noqa: S608 (the table name is ours, values are parameters)
    params = [parent for _app_id, parent in starts]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for app_id, depth in cursor.fetchall():
            rows[app_id].chain_length = depth


def _schedules(row: RowFor, now: datetime) -> None:
    """Next run (the earliest of the app's enabled schedules) and overdue
    schedules: a due time past the grace with no completed backup since the
    period before it (the missed-backup alarm's rule, over any location)."""
    grace = timedelta(seconds=settings.BACKUP_MISSED_GRACE_SECONDS)
    times: dict[Timing, tuple[datetime | None, datetime | None, datetime | None]] = {}
    for schedule in Schedule.objects.filter(enabled=True).order_by("app_id", "id"):
        app = row(schedule.app_id, schedule.host_id)
        try:
            timing = Timing.of(schedule)
            if timing not in times:  # many apps share a timetable: computed once each
                times[timing] = _when(timing, now)
        except ValueError:  # an invalid timetable cannot be saved; never break the page
            app.warnings.append(f"schedule {schedule.pk} has an invalid timetable")
            continue
        upcoming, due, threshold = times[timing]
        if upcoming and (app.next_run_at is None or upcoming < app.next_run_at):
            app.next_run_at = upcoming
        if due is None or threshold is None or due < schedule.created_at or now < due + grace:
            continue
        if app.last_success_at is None or app.last_success_at <= threshold:
            app.warnings.append(f"schedule {schedule.pk} overdue (due {due:%Y-%m-%d %H:%M} UTC)")


def _when(
    timing: Timing, now: datetime
) -> tuple[datetime | None, datetime | None, datetime | None]:
    """TIMING's next due time, its last one, and the time after which a
    completed backup keeps that last one from being missed."""
    grace = timedelta(seconds=settings.BACKUP_MISSED_GRACE_SECONDS)
    due = previous_due(timing, now)
    threshold = min(due - period_before(timing, due) + grace, due) if due else None
    return next_due(timing, now), due, threshold


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
    return timezone.make_aware(moment, UTC) if timezone.is_naive(moment) else moment


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
