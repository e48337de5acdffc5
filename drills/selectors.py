"""Reads of the drills app: a drill's summary, the last drill of a snapshot
or an app, lists, and the snapshot retention must keep for its drill."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery

from drills.models import Drill


def summary(drill: Drill | None) -> dict[str, Any] | None:
    """What the snapshot and app representations carry (None: never drilled)."""
    if drill is None:
        return None
    finished = drill.finished_at
    return {
        "drill_id": str(drill.pk),
        "backup_id": drill.backup_id,
        "state": drill.state,
        "outcome": drill.outcome or None,
        "reason": drill.reason,
        "last_drill_at": finished.isoformat().replace("+00:00", "Z") if finished else None,
        "duration_seconds": drill.duration_seconds,
    }


def _finished() -> QuerySet[Drill]:
    return Drill.objects.filter(state=Drill.State.FINISHED).order_by("-finished_at")


_ANNOTATED = {
    "last_drill_pk": "pk", "last_drill_outcome": "outcome", "last_drill_reason": "reason",
    "last_drill_finished_at": "finished_at", "last_drill_duration": "duration_seconds",
}  # fmt: skip


def with_last_drill(snapshots: QuerySet[Any]) -> QuerySet[Any]:
    """SNAPSHOTS annotated with their last finished drill (subqueries of the
    same query: a page of snapshots stays one query), read by last_drill_of."""
    last = _finished().filter(snapshot=OuterRef("pk"))
    return snapshots.annotate(
        **{name: Subquery(last.values(field)[:1]) for name, field in _ANNOTATED.items()}
    )


def last_drill_of(snapshot: Any) -> dict[str, Any] | None:
    if not hasattr(snapshot, "last_drill_pk"):
        return summary(_finished().filter(snapshot_id=snapshot.pk).first())
    if snapshot.last_drill_pk is None:
        return None
    drill = Drill(
        id=snapshot.last_drill_pk, backup_id=snapshot.backup_id, state=Drill.State.FINISHED,
        outcome=snapshot.last_drill_outcome, reason=snapshot.last_drill_reason,
        finished_at=snapshot.last_drill_finished_at,
        duration_seconds=snapshot.last_drill_duration,
    )  # fmt: skip
    return summary(drill)


def last_app_drill(app_id: str) -> dict[str, Any] | None:
    return summary(_finished().filter(app_id=app_id).first())


def last_app_drills(app_ids: list[str]) -> dict[str, dict[str, Any] | None]:
    """last_app_drill of each of APP_IDS in one query (GET apps lists hundreds).
    Each app's newest finished drill by a correlated subquery, not
    `app_id IN (400 ids)`: building that list's parameters alone took a
    quarter of GET apps' time (bench/bench_fleet.py); drills of other apps
    are left out here."""
    found: dict[str, dict[str, Any] | None] = dict.fromkeys(app_ids)
    seen: set[str] = set()
    newest = _finished().filter(app_id=OuterRef("app_id")).values("finished_at")[:1]
    latest = _finished().filter(finished_at=Subquery(newest)).order_by("app_id", "-finished_at")
    for drill in latest:
        if drill.app_id in found and drill.app_id not in seen:
            seen.add(drill.app_id)
            found[drill.app_id] = summary(drill)
    return found


def latest_snapshot(app_id: str) -> Any:
    """The snapshot a drill "of the app" takes: its newest completed one that
    is not a safety backup taken before a restore (that is the state a
    restore replaced, not the app's backup line); None when there is none.

    It is also "the tip of the app's chain" the issue speaks of: an
    incremental's parent is the app's previous completed snapshot, so the
    newest is the tip. A drill restores only the dumps, which every
    incremental holds whole, so it needs that one archive, not the chain."""
    from snapshots.models import Snapshot

    return (
        Snapshot.objects.filter(app_id=app_id, status=Snapshot.Status.COMPLETED)
        .exclude(purpose=Snapshot.Purpose.PRE_RESTORE)
        .order_by("-created_at")
        .first()
    )


def no_snapshot_to_drill(app_id: str) -> str:
    return f"app {app_id} has no completed snapshot to drill"


def get_latest_snapshot(app_id: str) -> Any:
    """latest_snapshot(APP_ID), or NotFound (the API's 404) saying why."""
    from engine.discovery import validate_app_id
    from engine.errors import AppNotFound
    from snapshots.selectors import NotFound

    try:
        validate_app_id(app_id)
    except AppNotFound as exc:
        raise NotFound(str(exc)) from None
    snapshot = latest_snapshot(app_id)
    if snapshot is None:
        raise NotFound(no_snapshot_to_drill(app_id))
    return snapshot


def list_drills(snapshot_id: str | None = None, app_id: str | None = None) -> QuerySet[Drill]:
    drills = Drill.objects.all()
    if snapshot_id:
        drills = drills.filter(backup_id=snapshot_id)
    if app_id:
        drills = drills.filter(app_id=app_id)
    return drills


def newest_passed_backup_id(app_id: str) -> str | None:
    """The newest snapshot of APP_ID (by its creation) whose latest drill passed."""
    from snapshots.models import Snapshot

    passed = Drill.objects.filter(snapshot=OuterRef("pk"), state=Drill.State.FINISHED)
    latest = passed.order_by("-finished_at").values("outcome")[:1]
    row = (
        Snapshot.objects.filter(app_id=app_id, status=Snapshot.Status.COMPLETED)
        .annotate(drill_outcome=Subquery(latest))
        .filter(drill_outcome=Drill.Outcome.PASSED)
        .order_by("-created_at")
        .values_list("backup_id", flat=True)
        .first()
    )
    return row
