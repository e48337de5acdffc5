"""The retention service against real rows and real files in a temporary
BACKUP_ROOT: what goes (archive, sidecar, row), the bytes freed, dry runs,
busy snapshots skipped, failures notified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schedules import retention_service
from schedules.models import AppNotificationTargets, Notification, Schedule
from schedules.retention_service import apply_retention_for_app, plan_retention
from schedules.secrets import encrypt_targets
from snapshots.models import Run, Snapshot
from tests.schedules.retention_helpers import files_of, make_stored

pytestmark = pytest.mark.django_db
APP = "retention_app"


@pytest.fixture(autouse=True)
def backup_root(settings: Any, tmp_path: Path) -> Path:
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_RETENTION_FAILED_DAYS = 7
    settings.BACKUP_RETENTION_PRE_RESTORE_DAYS = 14
    return settings.BACKUP_ROOT


def test_apply_removes_files_sidecars_and_rows_and_counts_the_bytes() -> None:
    Schedule.objects.create(app_id=APP, keep_last=2)
    snaps = [make_stored(APP, days) for days in (0.1, 1, 2, 3, 4)]
    other_app = make_stored("other_app", 10)
    gone = snaps[2:]
    expected_bytes = sum(p.stat().st_size for s in gone for p in files_of(s))

    outcome = apply_retention_for_app(APP)

    assert sorted(r.backup_id for r in outcome.removed) == sorted(s.backup_id for s in gone)
    assert outcome.freed_bytes == expected_bytes
    assert not outcome.failed and not outcome.skipped
    for snapshot in gone:
        assert not any(p.exists() for p in files_of(snapshot))
        assert not Snapshot.objects.filter(pk=snapshot.pk).exists()
    for snapshot in [*snaps[:2], other_app]:
        assert all(p.exists() for p in files_of(snapshot))
        assert Snapshot.objects.filter(pk=snapshot.pk).exists()


def test_dry_run_deletes_nothing_and_says_what_would_go() -> None:
    Schedule.objects.create(app_id=APP, keep_last=1)
    snaps = [make_stored(APP, days) for days in (0.1, 1, 2)]
    outcome = apply_retention_for_app(APP, dry_run=True)
    assert outcome.dry_run and not outcome.removed
    assert {d.backup_id for d in outcome.plan.removed} == {s.backup_id for s in snaps[1:]}
    assert outcome.freed_bytes == sum(s.size_bytes for s in snaps[1:])
    assert Snapshot.objects.filter(app_id=APP).count() == 3
    assert all(p.exists() for s in snaps for p in files_of(s))


def test_no_schedule_or_no_rule_removes_nothing() -> None:
    snaps = [make_stored(APP, days) for days in (0.1, 30, 300)]
    make_stored(APP, 100, status=Snapshot.Status.FAILED)
    assert not apply_retention_for_app(APP).removed
    Schedule.objects.create(app_id=APP)  # no rule set
    assert not apply_retention_for_app(APP).removed
    assert Snapshot.objects.filter(app_id=APP).count() == 4
    assert all(p.exists() for s in snaps for p in files_of(s))


def test_a_chain_is_kept_whole_and_removed_children_first() -> None:
    Schedule.objects.create(app_id=APP, keep_last=1)
    old_base = make_stored(APP, 10)
    old_link = make_stored(APP, 9, parent=old_base)
    old_tip = make_stored(APP, 8, parent=old_link)
    base = make_stored(APP, 3)
    link = make_stored(APP, 2, parent=base)
    tip = make_stored(APP, 1, parent=link)

    outcome = apply_retention_for_app(APP)

    # The delete service refuses a parent with children: all three went, so
    # the order was right.
    assert [r.backup_id for r in outcome.removed] == [
        old_tip.backup_id, old_link.backup_id, old_base.backup_id,
    ]  # fmt: skip
    assert set(Snapshot.objects.filter(app_id=APP).values_list("pk", flat=True)) == {
        base.pk, link.pk, tip.pk,
    }  # fmt: skip


def test_verified_running_and_in_use_snapshots_are_kept() -> None:
    Schedule.objects.create(app_id=APP, keep_last=1)
    make_stored(APP, 0.1)
    verified = make_stored(APP, 5)
    Run.objects.create(
        operation="verify", app_id=APP, snapshot=verified, state="completed",
        result={"valid": True},
    )  # fmt: skip
    invalid = make_stored(APP, 4)
    Run.objects.create(
        operation="verify", app_id=APP, snapshot=invalid, state="failed", result={"valid": False}
    )
    restoring = make_stored(APP, 6)
    Run.objects.create(operation="restore", app_id=APP, snapshot=restoring, state="running")
    running = make_stored(APP, 0, status=Snapshot.Status.RUNNING)

    plan = plan_retention(APP).plan
    reasons = {d.backup_id: d for d in plan.decisions}
    assert reasons[verified.backup_id].keep
    assert "the newest verified snapshot is always kept" in reasons[verified.backup_id].reasons
    assert reasons[restoring.backup_id].keep and reasons[running.backup_id].keep
    assert {d.backup_id for d in plan.removed} == {invalid.backup_id}


def test_a_snapshot_that_becomes_busy_after_the_decision_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race is made deterministic: a restore of the doomed snapshot
    starts right after the plan is made, before its delete."""
    Schedule.objects.create(app_id=APP, keep_last=1)
    make_stored(APP, 0.1)
    doomed = make_stored(APP, 2)
    real_plan = retention_service.plan_retention

    def plan_then_restore_starts(app_id: str, **kw: Any) -> Any:
        outcome = real_plan(app_id, **kw)
        Run.objects.create(operation="restore", app_id=APP, snapshot=doomed, state="pending")
        return outcome

    monkeypatch.setattr(retention_service, "plan_retention", plan_then_restore_starts)
    outcome = apply_retention_for_app(APP)
    assert not outcome.removed and not outcome.failed
    assert [s.backup_id for s in outcome.skipped] == [doomed.backup_id]
    assert "restore" in outcome.skipped[0].reason
    assert all(p.exists() for p in files_of(doomed))
    assert not Notification.objects.exists()  # busy is not a failure


def test_a_failed_delete_is_recorded_notified_and_the_rest_goes_on() -> None:
    Schedule.objects.create(app_id=APP, keep_last=1)
    AppNotificationTargets.objects.create(
        app_id=APP, targets_encrypted=encrypt_targets(["json://127.0.0.1:9/hook"])
    )
    make_stored(APP, 0.1)
    deletable = make_stored(APP, 2)
    # Its storage location is no longer configured: the delete service fails
    # and its transaction keeps the row.
    broken = make_stored(APP, 3, storage_location="gone-s3")

    outcome = apply_retention_for_app(APP)

    assert [r.backup_id for r in outcome.removed] == [deletable.backup_id]
    assert [f.backup_id for f in outcome.failed] == [broken.backup_id]
    assert "unknown storage location 'gone-s3'" in outcome.failed[0].reason
    assert Snapshot.objects.filter(pk=broken.pk).exists()
    note = Notification.objects.get(event="retention_failed", app_id=APP)
    assert "could not remove 1 snapshot" in note.title
    assert broken.backup_id in note.body and "json://" not in note.body


def test_short_rules_remove_old_failed_and_pre_restore_snapshots(settings: Any) -> None:
    settings.BACKUP_RETENTION_FAILED_DAYS = 3
    Schedule.objects.create(app_id=APP, keep_daily=30)
    make_stored(APP, 0.1)
    young_failed = make_stored(APP, 2, status=Snapshot.Status.FAILED)
    old_failed = make_stored(APP, 4, status=Snapshot.Status.FAILED)
    old_safety = make_stored(APP, 15, purpose=Snapshot.Purpose.PRE_RESTORE)
    manual = make_stored(APP, 200, purpose=Snapshot.Purpose.MANUAL)
    outcome = apply_retention_for_app(APP)
    assert {r.backup_id for r in outcome.removed} == {old_failed.backup_id, old_safety.backup_id}
    assert Snapshot.objects.filter(pk__in=[young_failed.pk, manual.pk]).count() == 2
    assert not any(p.exists() for p in files_of(old_safety))


def test_every_schedule_counts_disabled_ones_too() -> None:
    Schedule.objects.create(app_id=APP, keep_last=1)
    Schedule.objects.create(app_id=APP, keep_last=3, enabled=False)
    snaps = [make_stored(APP, days) for days in (0.1, 1, 2, 3)]
    outcome = apply_retention_for_app(APP)
    assert [r.backup_id for r in outcome.removed] == [snaps[3].backup_id]
