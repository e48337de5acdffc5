"""Retention as a pure function (restic's `forget` is the model): the facts
about an app's snapshots and its policies in, keep or remove with the
reasons for each out. No Django, no I/O: the service (retention_service.py)
gathers the facts and does the deletes, the API and CLI show the plan.

The rules, in the order they are applied:

1. Snapshots still pending or running, or used by a pending/running run
   (verify, restore), are kept: removing them would pull a file from under
   work in progress.
2. With no retention rule set on any of the app's schedules, nothing is
   removed (not even failed rows): an operator who never asked for
   retention never sees anything disappear.
3. Failed snapshots are removed FAILED_DAYS after they were made, and
   pre-restore safety snapshots PRE_RESTORE_DAYS after (both relative to
   now: they are housekeeping, not history).
4. Manual snapshots are an operator's deliberate act (e.g. "before the
   upgrade"): count rules (keep_last/daily/…) never remove them and they take
   no slot from scheduled ones; only retention_days removes them.
5. Scheduled snapshots: each policy is evaluated on its own over the app's
   completed scheduled snapshots, restic-style, and a snapshot is kept if ANY
   policy keeps it. (Union of keep sets, not max per rule: a schedule with no
   rule keeps everything, and "max per rule" would drop that promise; for the
   bucket rules the two agree, since keeping the newest N buckets is
   monotonic in N.)
6. Never broken, whatever the policies say: the newest completed snapshot,
   the newest snapshot that passed verification, and every snapshot a kept
   snapshot depends on (its parent chain: links and base).

Times: a snapshot's time is its created_at (the moment the backup_id names),
in UTC; the bucket rules read it in each policy's own timezone (the
schedule's), as restic uses local time, so "a day" is the operator's day.
retention_days counts back from the newest completed snapshot, as restic's
--keep-within does: backups that stopped do not make history age out (the
missed-backup alarm is what tells of stopped backups)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

COMPLETED = "completed"
FAILED = "failed"
ACTIVE_STATUSES = frozenset({"pending", "running"})
MANUAL = "manual"
SCHEDULED = "scheduled"
PRE_RESTORE = "pre_restore"
DRILL_PASSED_REASON = "the newest snapshot whose restore drill passed is always kept"

KEEP_RULES = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


@dataclass(frozen=True)
class SnapshotFacts:
    """What retention needs to know of one snapshot."""

    backup_id: str
    time: datetime  # aware; created_at
    status: str  # pending | running | completed | failed
    purpose: str = SCHEDULED  # manual | scheduled | pre_restore
    parent_id: str | None = None  # the backup_id it depends on
    size_bytes: int = 0
    verified: bool = False  # a completed verify run found it valid
    in_use: bool = False  # a pending/running run (verify, restore, backup) uses it


@dataclass(frozen=True)
class Policy:
    """One schedule's retention rules; None means the rule is not used."""

    label: str = "policy"  # "schedule 3", shown in reasons
    timezone: str = "UTC"
    retention_days: int | None = None
    keep_last: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None

    @property
    def has_rules(self) -> bool:
        return self.retention_days is not None or any(
            getattr(self, rule) is not None for rule in KEEP_RULES
        )


@dataclass(frozen=True)
class ShortRules:
    failed_days: int = 7
    pre_restore_days: int = 14


@dataclass(frozen=True)
class Decision:
    backup_id: str
    keep: bool
    reasons: tuple[str, ...]
    size_bytes: int = 0


@dataclass(frozen=True)
class Plan:
    """Every snapshot's decision, newest first, and the order to remove in
    (children before their parents)."""

    decisions: list[Decision]
    removal_order: list[str] = field(default_factory=list)

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    @property
    def removed(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]

    @property
    def freed_bytes(self) -> int:
        return sum(d.size_bytes for d in self.decisions if not d.keep)


def decide(
    snapshots: Iterable[SnapshotFacts],
    policies: Sequence[Policy],
    now: datetime,
    short: ShortRules = ShortRules(),  # frozen: one shared default is safe
    protected: Collection[str] = (),
) -> Plan:
    """Keep or remove each of SNAPSHOTS (one app's) under POLICIES (its
    schedules'), with every reason that applies. O(n log n): one sort, then
    linear passes per policy. PROTECTED: backup ids kept whatever the rules
    say (the newest snapshot whose restore drill passed: proof it restores)."""
    ordered = sorted(snapshots, key=lambda s: (s.time, s.backup_id), reverse=True)
    keep: dict[str, list[str]] = {s.backup_id: [] for s in ordered}
    drop: dict[str, list[str]] = {s.backup_id: [] for s in ordered}
    completed = [s for s in ordered if s.status == COMPLETED]
    newest = completed[0].time if completed else None
    ruled = [p for p in policies if p.has_rules]

    for snap in ordered:
        if snap.status in ACTIVE_STATUSES:
            keep[snap.backup_id].append(f"{snap.status}: never removed while it is being made")
        if snap.in_use:
            keep[snap.backup_id].append("in use by a pending or running run")
    if not ruled:
        for snap in ordered:
            keep[snap.backup_id].append("no retention rule is set on any schedule of this app")
    else:
        _short_rules(ordered, now, short, keep, drop)
        _manual(completed, ruled, newest, keep, drop)
        scheduled = [s for s in completed if s.purpose == SCHEDULED]
        for policy in ruled:
            for backup_id, reason in _policy_keeps(scheduled, policy, newest):
                keep[backup_id].append(reason)
        unkept = f"scheduled snapshot kept by no rule of {', '.join(p.label for p in ruled)}"
        for snap in scheduled:
            if not keep[snap.backup_id]:
                drop[snap.backup_id].append(unkept)
    for snap in ordered:
        if snap.backup_id in protected:
            keep[snap.backup_id].append(DRILL_PASSED_REASON)
    _never_break(ordered, completed, keep)

    decisions = []
    for snap in ordered:
        kept = bool(keep[snap.backup_id])
        reasons = keep[snap.backup_id] if kept else drop[snap.backup_id]
        if not reasons:  # cannot happen by construction; a decision always says why
            reasons = ["kept: no rule removes it"]
            kept = True
        decisions.append(Decision(snap.backup_id, kept, tuple(reasons), snap.size_bytes or 0))
    return Plan(decisions, _removal_order(ordered, {d.backup_id for d in decisions if not d.keep}))


def _short_rules(
    ordered: list[SnapshotFacts],
    now: datetime,
    short: ShortRules,
    keep: dict[str, list[str]],
    drop: dict[str, list[str]],
) -> None:
    """Failed and pre-restore snapshots: a short life counted from now."""
    for snap in ordered:
        if snap.status == FAILED:
            days, what = short.failed_days, "failed snapshot"
        elif snap.status == COMPLETED and snap.purpose == PRE_RESTORE:
            days, what = short.pre_restore_days, "pre-restore safety snapshot"
        else:
            continue
        age = now - snap.time
        if age >= timedelta(days=days):
            drop[snap.backup_id].append(f"{what} older than {days} days ({age.days} days old)")
        else:
            keep[snap.backup_id].append(f"{what} younger than {days} days")


def _manual(
    completed: list[SnapshotFacts],
    ruled: list[Policy],
    newest: datetime | None,
    keep: dict[str, list[str]],
    drop: dict[str, list[str]],
) -> None:
    """A manual snapshot is kept by a policy unless that policy sets
    retention_days and the snapshot is older: count rules never remove it."""
    for snap in completed:
        if snap.purpose != MANUAL:
            continue
        keepers = [p for p in ruled if p.retention_days is None]
        if keepers:
            keep[snap.backup_id].append(
                f"manual snapshot: only retention_days removes it, and {keepers[0].label} sets none"
            )
            continue
        within = [p for p in ruled if newest is not None and _within(snap, p, newest)]
        if within:
            keep[snap.backup_id].append(
                f"manual snapshot within retention_days {within[0].retention_days} "
                f"({within[0].label})"
            )
        else:
            longest = max(p.retention_days or 0 for p in ruled)
            drop[snap.backup_id].append(
                f"manual snapshot older than every schedule's retention_days (longest "
                f"{longest} days before the newest snapshot)"
            )


def _within(snap: SnapshotFacts, policy: Policy, newest: datetime) -> bool:
    days = policy.retention_days
    return days is not None and snap.time > newest - timedelta(days=days)


# (rule, the bucket a local time falls in as a cheap key, the bucket in words)
_BUCKETS: tuple[tuple[str, Callable[[datetime], object], Callable[[datetime], str]], ...] = (
    ("keep_daily", lambda t: (t.year, t.month, t.day), lambda t: f"day {t:%Y-%m-%d}"),
    (
        "keep_weekly",
        lambda t: t.isocalendar()[:2],
        lambda t: "week {}-W{:02d}".format(*t.isocalendar()[:2]),
    ),
    ("keep_monthly", lambda t: (t.year, t.month), lambda t: f"month {t:%Y-%m}"),
    ("keep_yearly", lambda t: t.year, lambda t: f"year {t:%Y}"),
)


def _policy_keeps(
    scheduled: list[SnapshotFacts], policy: Policy, newest: datetime | None
) -> Iterable[tuple[str, str]]:
    """(backup_id, reason) for each snapshot POLICY keeps, restic's way:
    newest first, keep_last keeps the first N; each bucket rule keeps the
    newest snapshot of each of the last N days (weeks, …) that have one.
    Stops at the first snapshot past every rule: what is older keeps nothing."""
    zone = ZoneInfo(policy.timezone) if policy.timezone not in ("", "UTC") else UTC
    where = f"({policy.label}, {zone})"
    buckets = [(rule, key, words, getattr(policy, rule) or 0) for rule, key, words in _BUCKETS]
    counts = {rule: count for rule, _, _, count in buckets}
    last: dict[str, object] = {}
    days = policy.retention_days
    cutoff = newest - timedelta(days=days) if newest is not None and days is not None else None
    keep_last = policy.keep_last or 0
    for index, snap in enumerate(scheduled):
        within = cutoff is not None and snap.time > cutoff
        if index >= keep_last and not within and not any(counts.values()):
            return
        if index < keep_last:
            yield snap.backup_id, f"keep_last {keep_last}: number {index + 1} {where}"
        if within:
            yield snap.backup_id, f"within retention_days {days} of the newest snapshot {where}"
        local = None
        for rule, key, words, total in buckets:
            if counts[rule] <= 0:
                continue
            local = local or snap.time.astimezone(zone)
            value = key(local)
            if last.get(rule) != value:
                last[rule] = value
                counts[rule] -= 1
                yield snap.backup_id, f"{rule} {total}: newest of {words(local)} {where}"


def _never_break(
    ordered: list[SnapshotFacts], completed: list[SnapshotFacts], keep: dict[str, list[str]]
) -> None:
    if completed:
        keep[completed[0].backup_id].append("the newest completed snapshot is always kept")
    verified = next((s for s in completed if s.verified), None)
    if verified is not None:
        keep[verified.backup_id].append("the newest verified snapshot is always kept")
    # The chain rule last, so it sees every other reason to keep. Each
    # snapshot's chain is walked once (seen), so a long chain stays linear.
    parents = {s.backup_id: s.parent_id for s in ordered}
    seen: set[str] = set()
    for snap in ordered:
        if not keep[snap.backup_id] or snap.backup_id in seen:
            continue
        child, parent = snap.backup_id, parents.get(snap.backup_id)
        seen.add(child)
        while parent is not None and parent in parents:
            keep[parent].append(f"kept snapshot {child} depends on it")
            if parent in seen:
                break
            seen.add(parent)
            child, parent = parent, parents[parent]


def _removal_order(ordered: list[SnapshotFacts], removed: set[str]) -> list[str]:
    """REMOVED, deepest in its chain first: a child goes before its parent
    (the delete service refuses a parent that still has children)."""
    parents = {s.backup_id: s.parent_id for s in ordered}
    depth: dict[str, int] = {}

    def depth_of(backup_id: str) -> int:
        path = []
        node: str | None = backup_id
        while node is not None and node in parents and node not in depth:
            path.append(node)
            node = parents[node]
            if len(path) > len(parents):  # a cycle in bad data: stop, do not spin
                break
        base = depth.get(node, -1) if node is not None else -1
        for step in reversed(path):
            base += 1
            depth[step] = base
        return depth[backup_id]

    return sorted(removed, key=lambda b: (-depth_of(b), b))
