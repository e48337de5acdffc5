"""Retention for one app: facts from the database, the pure decision
(schedules/retention.py), then the deletes through the same service as the
API (snapshots.services.snapshots.delete_snapshot: archive, sidecar, row, on
whichever storage location the snapshot is in).

A snapshot that became busy between the decision and its delete (a verify or
restore started, a child appeared) is skipped with the delete service's
reason, not an error. Any other failure is recorded, the remaining deletes go
on, and the app's notification targets hear of it (retention_failed)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.utils import timezone

from engine.errors import EngineError
from schedules.models import Schedule
from schedules.retention import (
    KEEP_RULES,
    Decision,
    Plan,
    Policy,
    ShortRules,
    SnapshotFacts,
    decide,
)
from snapshots.models import Run, Snapshot
from snapshots.services.snapshots import SnapshotInUse, delete_snapshot
from snapshots.storage_locations import UnknownStorageLocation

logger = logging.getLogger(__name__)

_ACTIVE = (Run.State.PENDING, Run.State.RUNNING)


@dataclass(frozen=True)
class Removed:
    backup_id: str
    freed_bytes: int


@dataclass(frozen=True)
class NotRemoved:
    backup_id: str
    reason: str


@dataclass
class RetentionOutcome:
    """What retention decided for APP_ID and, unless DRY_RUN, what it did."""

    app_id: str
    dry_run: bool
    decided_at: datetime
    policies: list[Policy]
    plan: Plan
    snapshots: dict[str, SnapshotFacts]
    removed: list[Removed] = field(default_factory=list)
    skipped: list[NotRemoved] = field(default_factory=list)  # busy now: tried again next time
    failed: list[NotRemoved] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        """Bytes really freed (archive and sidecar); for a dry run, the
        archives' sizes as the rows record them."""
        if self.dry_run:
            return self.plan.freed_bytes
        return sum(r.freed_bytes for r in self.removed)

    def summary(self) -> dict[str, Any]:
        """Counts and ids: what a task returns and a log line says."""
        return {
            "app_id": self.app_id, "dry_run": self.dry_run,
            "kept": len(self.plan.kept), "to_remove": len(self.plan.removed),
            "removed": [r.backup_id for r in self.removed], "freed_bytes": self.freed_bytes,
            "skipped": [{"backup_id": s.backup_id, "reason": s.reason} for s in self.skipped],
            "failed": [{"backup_id": f.backup_id, "reason": f.reason} for f in self.failed],
        }  # fmt: skip

    def decision_rows(self, keep: bool) -> list[dict[str, Any]]:
        """The kept (KEEP) or removed decisions with each snapshot's facts,
        newest first: what the preview shows."""
        rows = []
        for decision in self.plan.decisions:
            if decision.keep != keep:
                continue
            facts = self.snapshots[decision.backup_id]
            rows.append(_row(decision, facts))
        return rows


def _row(decision: Decision, facts: SnapshotFacts) -> dict[str, Any]:
    return {
        "backup_id": decision.backup_id, "created_at": facts.time, "status": facts.status,
        "purpose": facts.purpose, "parent_backup_id": facts.parent_id,
        "size_bytes": facts.size_bytes, "verified": facts.verified,
        "reasons": list(decision.reasons),
    }  # fmt: skip


def app_is_known(app_id: str) -> bool:
    """An app retention can speak of: one with a schedule or a snapshot."""
    return (
        Schedule.objects.filter(app_id=app_id).exists()
        or Snapshot.objects.filter(app_id=app_id).exists()
    )


def apps_with_retention() -> list[str]:
    """Apps with at least one schedule that sets a retention rule (the others
    would have nothing removed)."""
    return sorted({app_id for app_id, _ in retention_targets()})


def retention_targets() -> list[tuple[str, str]]:
    """(app id, host id: "" for a schedule naming no host) of the schedules
    that set a retention rule: what the daily retention applies."""
    rules = ("retention_days", *KEEP_RULES)
    rows = Schedule.objects.values_list("app_id", "host_id", *rules)
    return sorted(
        {(app_id, host) for app_id, host, *values in rows if any(v is not None for v in values)}
    )


def policies_for(app_id: str, host_id: str | None = None) -> list[Policy]:
    """Every schedule of APP_ID (on HOST_ID when given: its own and those
    naming no host), enabled or not: disabling a schedule pauses its
    backups, it must not shorten what its policy keeps."""
    policies = []
    schedules = Schedule.objects.filter(app_id=app_id)
    if host_id is not None:
        schedules = schedules.filter(host_id__in=[host_id, ""])
    for schedule in schedules.order_by("id"):
        zone = schedule.timezone or "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            # The schedule API refuses bad names; a row edited by hand falls back.
            logger.warning("schedule %s has an unknown timezone; retention uses UTC", schedule.pk)
            zone = "UTC"
        rules = {name: getattr(schedule, name) for name in ("retention_days", *KEEP_RULES)}
        policies.append(Policy(label=f"schedule {schedule.pk}", timezone=zone, **rules))
    return policies


def snapshot_facts(app_id: str, host_id: str | None = None) -> list[SnapshotFacts]:
    """APP_ID's snapshots (made on HOST_ID when given: the same app id on
    another host is another app) as retention sees them: three queries,
    whatever their number."""
    verified = set(
        Run.objects.filter(
            app_id=app_id, operation=Run.Operation.VERIFY, state=Run.State.COMPLETED,
            snapshot__isnull=False, result__valid=True,
        ).values_list("snapshot_id", flat=True)
    )  # fmt: skip
    in_use = set(
        Run.objects.filter(snapshot__app_id=app_id, state__in=_ACTIVE).values_list(
            "snapshot_id", flat=True
        )
    )
    made = Snapshot.objects.filter(app_id=app_id)
    if host_id is not None:
        made = made.filter(host_id=host_id)
    rows = made.values_list(
        "pk", "backup_id", "created_at", "status", "purpose", "parent__backup_id", "size_bytes"
    )
    facts = []
    for pk, backup_id, created_at, status, purpose, parent, size in rows:
        snapshot = SnapshotFacts(
            backup_id=backup_id, time=created_at, status=status, purpose=purpose,
            parent_id=parent, size_bytes=size or 0, verified=pk in verified, in_use=pk in in_use,
        )  # fmt: skip
        facts.append(snapshot)
    return facts


def _drill_protected(app_id: str) -> tuple[str, ...]:
    """The newest snapshot whose latest restore drill passed (drills app)."""
    from drills.selectors import newest_passed_backup_id

    passed = newest_passed_backup_id(app_id)
    return (passed,) if passed else ()


def plan_retention(
    app_id: str, *, now: datetime | None = None, policies: list[Policy] | None = None,
    host_id: str | None = None,
) -> RetentionOutcome:  # fmt: skip
    """The decision for APP_ID (on HOST_ID only when given), nothing deleted
    (the preview, a dry run). POLICIES, when given, stand in for the app's
    schedules' (the console's "what would this policy keep", before it is
    saved)."""
    facts = snapshot_facts(app_id, host_id)
    policies = policies_for(app_id, host_id) if policies is None else policies
    moment = now or timezone.now()
    short = ShortRules(
        failed_days=settings.BACKUP_RETENTION_FAILED_DAYS,
        pre_restore_days=settings.BACKUP_RETENTION_PRE_RESTORE_DAYS,
    )
    plan = decide(facts, policies, moment, short, protected=_drill_protected(app_id))
    return RetentionOutcome(
        app_id=app_id, dry_run=True, decided_at=moment, policies=policies, plan=plan,
        snapshots={f.backup_id: f for f in facts},
    )  # fmt: skip


def apply_retention_for_app(
    app_id: str, *, dry_run: bool = False, host_id: str | None = None
) -> RetentionOutcome:
    """Decide (for APP_ID on HOST_ID only, when given) and, unless DRY_RUN,
    delete what the decision removes,
    children before parents. Never raises for one snapshot's failure: it is
    in outcome.failed and notified. An error before any delete (the database
    down) is notified and raised."""
    try:
        outcome = plan_retention(app_id, host_id=host_id)
    except Exception as exc:
        if not dry_run:
            _notify(app_id, "retention could not decide", _describe(exc))
        raise
    if dry_run:
        return outcome
    outcome.dry_run = False
    for backup_id in outcome.plan.removal_order:
        _remove(outcome, backup_id)
    if outcome.removed or outcome.skipped or outcome.failed:
        logger.info(
            "retention %s: removed %d snapshot(s) %s, freed %d bytes; skipped %s; failed %s",
            app_id, len(outcome.removed), [r.backup_id for r in outcome.removed],
            outcome.freed_bytes, [s.backup_id for s in outcome.skipped],
            [f.backup_id for f in outcome.failed],
        )  # fmt: skip
    if outcome.failed:
        lines = [f"{f.backup_id}: {f.reason}" for f in outcome.failed[:20]]
        _notify(
            app_id,
            f"retention could not remove {len(outcome.failed)} snapshot(s) of {app_id}",
            "\n".join(lines),
        )
    return outcome


def _remove(outcome: RetentionOutcome, backup_id: str) -> None:
    snapshot = Snapshot.objects.filter(backup_id=backup_id).first()
    if snapshot is None:  # another retention run, or an operator, was first
        outcome.skipped.append(NotRemoved(backup_id, "already deleted"))
        return
    try:
        deleted = delete_snapshot(snapshot)
    except SnapshotInUse as exc:
        outcome.skipped.append(NotRemoved(backup_id, str(exc)))
        logger.info("retention %s: skipped %s (in use)", outcome.app_id, backup_id)
        return
    except Exception as exc:
        outcome.failed.append(NotRemoved(backup_id, _describe(exc)))
        logger.error(
            "retention %s: could not delete %s (%s)", outcome.app_id, backup_id, _describe(exc)
        )
        return
    outcome.removed.append(Removed(backup_id, deleted.freed_bytes))


def _describe(exc: Exception) -> str:
    """Our own errors word themselves; others (a storage client's, which may
    carry an endpoint or a key id) are named by type only."""
    if isinstance(exc, (EngineError, OSError, UnknownStorageLocation)):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} (its message is not recorded: it may hold a credential)"


def _notify(app_id: str, title: str, body: str) -> None:
    """Tell the app's targets (schedules.notifications, imported here: it is
    optional for retention, and a notifier's failure never fails retention)."""
    try:
        from schedules.notifications import notify
    except ImportError:
        logger.warning("retention failed for %s, and notifications are not installed", app_id)
        return
    try:
        notify("retention_failed", app_id=app_id, title=title, body=body)
    except Exception as exc:  # notify() promises not to raise; retention must not depend on it
        logger.error("could not notify retention failure of %s: %s", app_id, type(exc).__name__)
