"""The pure retention function: never-break rules over random snapshot sets
and policies (hypothesis), restic's bucket semantics, chains, edge cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schedules.retention import Policy, ShortRules, SnapshotFacts, decide

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
STATUSES = ("completed", "completed", "completed", "failed", "pending", "running")
PURPOSES = ("scheduled", "scheduled", "manual", "pre_restore")
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Pacific/Kiritimati")


def snap(
    backup_id: str, hours_ago: float, status: str = "completed", **fields: object
) -> SnapshotFacts:
    return SnapshotFacts(backup_id, NOW - timedelta(hours=hours_ago), status, **fields)  # type: ignore[arg-type]


@st.composite
def snapshot_sets(draw: st.DrawFn) -> list[SnapshotFacts]:
    """Up to 60 snapshots over ~2 years, some chained to older ones."""
    count = draw(st.integers(0, 60))
    hours = draw(st.lists(st.integers(0, 2 * 365 * 24), min_size=count, max_size=count))
    result: list[SnapshotFacts] = []
    for index, hours_ago in enumerate(sorted(hours)):  # index 0 is the newest
        older = list(range(index + 1, count))
        parent = draw(st.one_of(st.none(), st.sampled_from(older))) if older else None
        result.append(
            snap(
                f"b{index:03d}",
                hours_ago,
                draw(st.sampled_from(STATUSES)),
                purpose=draw(st.sampled_from(PURPOSES)),
                parent_id=f"b{parent:03d}" if parent is not None else None,
                size_bytes=draw(st.integers(0, 10**9)),
                verified=draw(st.booleans()),
                in_use=draw(st.integers(0, 9)) == 0,
            )
        )
    return result


rule = st.one_of(st.none(), st.integers(0, 12))
policies = st.lists(
    st.builds(
        Policy,
        label=st.sampled_from(["schedule 1", "schedule 2", "schedule 3"]),
        timezone=st.sampled_from(ZONES),
        retention_days=st.one_of(st.none(), st.integers(0, 400)),
        keep_last=rule,
        keep_daily=rule,
        keep_weekly=rule,
        keep_monthly=rule,
        keep_yearly=rule,
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(snapshots=snapshot_sets(), chosen=policies)
def test_never_break_rules(snapshots: list[SnapshotFacts], chosen: list[Policy]) -> None:
    plan = decide(snapshots, chosen, NOW)
    by_id = {d.backup_id: d for d in plan.decisions}
    assert sorted(by_id) == sorted(s.backup_id for s in snapshots)
    assert all(
        d.reasons and all(isinstance(r, str) and r for r in d.reasons) for d in by_id.values()
    )
    completed = sorted(
        (s for s in snapshots if s.status == "completed"),
        key=lambda s: (s.time, s.backup_id),
        reverse=True,  # ties: by id, as decide() does
    )
    if completed:
        assert by_id[completed[0].backup_id].keep
    verified = [s for s in completed if s.verified]
    if verified:
        assert by_id[verified[0].backup_id].keep
    for s in snapshots:
        if s.status in ("pending", "running") or s.in_use:
            assert by_id[s.backup_id].keep, s
        if by_id[s.backup_id].keep and s.parent_id is not None:
            assert by_id[s.parent_id].keep, (s, by_id[s.parent_id])
    if not any(p.has_rules for p in chosen):
        assert not plan.removed
    # Children before parents in the removal order.
    position = {b: i for i, b in enumerate(plan.removal_order)}
    assert set(position) == {d.backup_id for d in plan.removed}
    for s in snapshots:
        if s.backup_id in position and s.parent_id in position:
            assert position[s.backup_id] < position[s.parent_id]
    assert plan.freed_bytes == sum(s.size_bytes for s in snapshots if not by_id[s.backup_id].keep)


@settings(max_examples=200, deadline=None)
@given(snapshots=snapshot_sets(), chosen=policies, extra=policies)
def test_more_schedules_never_remove_more(
    snapshots: list[SnapshotFacts], chosen: list[Policy], extra: list[Policy]
) -> None:
    """Adding a schedule can only keep more (union of keep sets), provided the
    first set already has a rule (else it removes nothing at all)."""
    if not any(p.has_rules for p in chosen):
        return
    alone = {d.backup_id for d in decide(snapshots, chosen, NOW).removed}
    together = {d.backup_id for d in decide(snapshots, chosen + extra, NOW).removed}
    assert together <= alone


def test_keep_daily_keeps_the_newest_of_each_of_the_last_days_that_have_one() -> None:
    # Two on the 15th, one on the 13th (none on the 14th), one on the 10th.
    snapshots = [snap("a", 1), snap("b", 5), snap("c", 48), snap("d", 5 * 24)]
    plan = decide(snapshots, [Policy(keep_daily=2)], NOW)
    kept = {d.backup_id for d in plan.kept}
    assert kept == {"a", "c"}  # a: newest of the 15th; c: of the 13th (a day with one)
    reasons = {d.backup_id: d.reasons for d in plan.decisions}
    assert any("keep_daily 2: newest of day 2026-03-13" in r for r in reasons["c"])
    assert reasons["b"] == ("scheduled snapshot kept by no rule of policy",)


def test_two_snapshots_in_one_day_only_the_newest_is_the_days_keeper() -> None:
    snapshots = [snap("late", 2), snap("early", 10)]
    plan = decide(snapshots, [Policy(keep_daily=7)], NOW)
    assert [d.backup_id for d in plan.removed] == ["early"]


def test_days_follow_the_schedules_timezone() -> None:
    # 2026-03-15 03:00 UTC is still the 14th in New York (UTC-4 after DST on the 8th).
    at = datetime(2026, 3, 15, 3, 0, tzinfo=UTC)
    before = datetime(2026, 3, 14, 20, 0, tzinfo=UTC)
    snapshots = [SnapshotFacts("x", at, "completed"), SnapshotFacts("y", before, "completed")]
    utc = decide(snapshots, [Policy(keep_daily=2)], NOW)
    new_york = decide(snapshots, [Policy(keep_daily=2, timezone="America/New_York")], NOW)
    assert {d.backup_id for d in utc.kept} == {"x", "y"}  # two UTC days
    assert {d.backup_id for d in new_york.kept} == {"x"}  # one New York day


def test_weekly_monthly_yearly_buckets() -> None:
    snapshots = [snap(f"d{i}", i * 24) for i in range(400)]  # one a day for 400 days
    plan = decide(snapshots, [Policy(keep_weekly=3, keep_monthly=2, keep_yearly=2)], NOW)
    kept = [d for d in plan.kept]
    weekly = [d for d in kept if any(r.startswith("keep_weekly") for r in d.reasons)]
    monthly = [d for d in kept if any(r.startswith("keep_monthly") for r in d.reasons)]
    yearly = [d for d in kept if any(r.startswith("keep_yearly") for r in d.reasons)]
    assert len(weekly) == 3 and len(monthly) == 2 and len(yearly) == 2
    # The newest of February 2026 is the 28th; of 2025, 31 December.
    assert any("newest of month 2026-02" in r for d in monthly for r in d.reasons)
    assert {d.backup_id for d in yearly} == {
        "d0",
        f"d{(NOW.date() - datetime(2025, 12, 31).date()).days}",
    }


def test_retention_days_counts_from_the_newest_snapshot_not_now() -> None:
    # Backups stopped 100 days ago: a 30-day window still keeps the last month of them.
    snapshots = [snap(f"s{i}", (100 + i) * 24) for i in range(60)]
    plan = decide(snapshots, [Policy(retention_days=30)], NOW)
    assert {d.backup_id for d in plan.kept} == {f"s{i}" for i in range(30)}


def test_no_rule_removes_nothing_not_even_failed() -> None:
    snapshots = [snap("new", 1), snap("old-failed", 999, "failed"), snap("old", 9999)]
    plan = decide(snapshots, [Policy(label="schedule 1")], NOW)
    assert not plan.removed
    assert all(any("no retention rule" in r for r in d.reasons) for d in plan.decisions)
    assert not decide(snapshots, [], NOW).removed


def test_failed_and_pre_restore_follow_their_short_rule() -> None:
    snapshots = [
        snap("new", 1),
        snap("failed-young", 6 * 24, "failed"),
        snap("failed-old", 8 * 24, "failed"),
        snap("safety-young", 13 * 24, purpose="pre_restore"),
        snap("safety-old", 15 * 24, purpose="pre_restore"),
    ]
    plan = decide(snapshots, [Policy(keep_last=10)], NOW, ShortRules(7, 14))
    assert {d.backup_id for d in plan.removed} == {"failed-old", "safety-old"}
    reasons = {d.backup_id: d.reasons for d in plan.decisions}
    assert reasons["failed-old"] == ("failed snapshot older than 7 days (8 days old)",)
    assert "pre-restore safety snapshot older than 14 days" in reasons["safety-old"][0]


def test_manual_snapshots_are_removed_only_by_retention_days() -> None:
    snapshots = [snap("s0", 1)] + [
        snap(f"m{i}", i * 24 * 20, purpose="manual") for i in range(1, 5)
    ]
    by_count = decide(snapshots, [Policy(keep_last=1)], NOW)
    assert not by_count.removed
    assert "only retention_days removes it" in by_count.decisions[1].reasons[0]
    by_age = decide(snapshots, [Policy(keep_last=1, retention_days=50)], NOW)
    assert {d.backup_id for d in by_age.removed} == {"m3", "m4"}  # 60 and 80 days old
    # A second schedule without retention_days protects them again.
    assert not decide(snapshots, [Policy(retention_days=50), Policy(keep_last=1)], NOW).removed


def test_none_completed_and_all_failed() -> None:
    running = [snap("p", 1, "pending"), snap("r", 2, "running")]
    assert not decide(running, [Policy(keep_last=0, retention_days=0)], NOW).removed
    failed = [snap(f"f{i}", 24 * (i + 1) * 5, "failed") for i in range(4)]
    plan = decide(failed, [Policy(keep_last=1)], NOW)
    assert {d.backup_id for d in plan.removed} == {"f1", "f2", "f3"}  # 10, 15, 20 days old
    assert decide([], [Policy(keep_last=1)], NOW).decisions == []


def test_a_chain_keeps_its_base_and_links() -> None:
    # full <- inc1 <- inc2 (newest); another full older; keep_last=1 keeps inc2 only by rule.
    snapshots = [
        snap("inc2", 1, parent_id="inc1"),
        snap("inc1", 2, parent_id="full"),
        snap("full", 3),
        snap("old", 4),
    ]
    plan = decide(snapshots, [Policy(keep_last=1)], NOW)
    reasons = {d.backup_id: d for d in plan.decisions}
    assert [d.backup_id for d in plan.removed] == ["old"]
    assert reasons["inc1"].reasons == ("kept snapshot inc2 depends on it",)
    assert reasons["full"].reasons == ("kept snapshot inc1 depends on it",)


def test_removal_order_puts_children_first_even_when_older() -> None:
    # Rows built by hand: the child's time is before its parent's.
    snapshots = [
        snap("keep", 0),
        snap("parent", 5, "failed"),
        snap("child", 300, "failed", parent_id="parent"),
    ]
    plan = decide(snapshots, [Policy(keep_last=1)], NOW, ShortRules(failed_days=0))
    assert plan.removal_order == ["child", "parent"]


def test_the_newest_verified_snapshot_is_kept() -> None:
    snapshots = [snap("new", 1), snap("verified", 50, verified=True), snap("old", 100)]
    plan = decide(snapshots, [Policy(keep_last=1)], NOW)
    assert {d.backup_id for d in plan.removed} == {"old"}
    assert "the newest verified snapshot is always kept" in plan.decisions[1].reasons


def test_a_long_chain_is_walked_without_recursion_and_linearly() -> None:
    count = 20_000
    snapshots = [
        snap(f"c{i}", i, parent_id=f"c{i + 1}" if i + 1 < count else None) for i in range(count)
    ]
    plan = decide(snapshots, [Policy(keep_last=1)], NOW)
    assert not plan.removed
    # Each link got exactly one chain reason: the walk stopped at what it had seen.
    assert all(len(d.reasons) == 1 for d in plan.decisions[1:])
