"""Retention decision time for one app with 10,000 snapshots (run by hand).

    .venv/bin/python bench/bench_retention.py [--snapshots 10000] [--repeat 7]

The pure function only (schedules/retention.py: no Django, no database), on
a realistic app: a backup every hour for ~14 months, incremental chains of 7
on a full, a manual snapshot now and then, a few pre-restore and failed ones,
some verified; three schedules (hourly keep_last + keep_daily in
Europe/Berlin, weekly + monthly in America/New_York, yearly + retention_days in
UTC). Target: < 1 s per decision. Prints the best and median of REPEAT runs
and checks the plan keeps the never-break rules."""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schedules.retention import Policy, ShortRules, SnapshotFacts, decide

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POLICIES = [
    Policy("schedule 1", "Europe/Berlin", keep_last=24, keep_daily=14),
    Policy("schedule 2", "America/New_York", keep_weekly=8, keep_monthly=12),
    Policy("schedule 3", "UTC", keep_yearly=3, retention_days=7),
]


def snapshots(count: int, rng: random.Random) -> list[SnapshotFacts]:
    result = []
    parent: str | None = None
    for index in range(count):  # oldest first
        moment = NOW - timedelta(hours=count - index)
        backup_id = f"backup_{moment:%Y%m%d_%H%M%S}_{index:06x}"
        roll = rng.random()
        status = "failed" if roll < 0.02 else "completed"
        purpose = "manual" if roll > 0.99 else "pre_restore" if roll > 0.985 else "scheduled"
        if status == "failed" or index % 8 == 0:
            parent = None  # a full starts a chain (a failed one joins none)
        facts = SnapshotFacts(
            backup_id, moment, status, purpose, parent_id=parent,
            size_bytes=rng.randint(10**6, 10**9), verified=rng.random() < 0.05,
        )  # fmt: skip
        result.append(facts)
        if status == "completed":
            parent = backup_id
    if result:
        last = result[-1]
        result[-1] = SnapshotFacts(last.backup_id, last.time, "running", last.purpose)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(11)
    facts = snapshots(args.snapshots, rng)
    rng.shuffle(facts)  # the function must not rely on the caller's order
    times = []
    plan = None
    for _ in range(args.repeat):
        start = time.perf_counter()
        plan = decide(facts, POLICIES, NOW, ShortRules(7, 14))
        times.append(time.perf_counter() - start)
    assert plan is not None
    by_id = {d.backup_id: d for d in plan.decisions}
    for snap in facts:  # never-break: a kept snapshot's parent is kept
        if by_id[snap.backup_id].keep and snap.parent_id:
            assert by_id[snap.parent_id].keep, snap
    best, median = min(times), statistics.median(times)
    verdict = "OK" if median < 1.0 else "TOO SLOW"
    print(
        f"retention decide  n={args.snapshots}  kept={len(plan.kept)}  "
        f"removed={len(plan.removed)}  best {best * 1000:.1f} ms  median {median * 1000:.1f} ms  "
        f"target < 1000 ms  {verdict}"
    )
    return 0 if median < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
