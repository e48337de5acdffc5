"""Dashboard render time with 500 apps and 100,000 snapshots in PostgreSQL
(run by hand).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bs_console_ui \\
      .venv/bin/python bench/bench_dashboard.py [--apps 500] [--rows 100000] \\
      [--requests 50] [--keep]

Creates its own database (bench_dashboard_<name> of DATABASE_URL), fills it with ROWS
snapshots spread over APPS apps and two years (some failed, some
incremental chains, a few pre-restore), a verify run for most apps and a
daily schedule for most apps, then times GET /admin/ (the dashboard) as a
logged-in superuser through the Django test client: session, the
dashboard's queries, the template and its SVG chart. Target: p95 <= 300 ms.
Prints p50/p95/max and the number of queries of one render, and the same
figures for Django's stock admin index (/admin/?apps=1) timed interleaved in
the same run, as the anchor."""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/backup_bench")

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from schedules.models import Schedule  # noqa: E402
from snapshots.models import Run, Snapshot  # noqa: E402

TARGET_MS = 300.0


def fill(apps: list[str], rows: int) -> None:
    rng = random.Random(42)
    now = timezone.now()
    created_field = Snapshot._meta.get_field("created_at")
    created_field.auto_now_add = False  # keep the spread-out times we set (bench only)
    started = time.perf_counter()
    batch: list[Snapshot] = []
    try:
        for n in range(rows):
            app_id = apps[n % len(apps)]
            created = now - timedelta(seconds=rng.randrange(0, 2 * 365 * 86400))
            roll = rng.random()
            status = "failed" if roll < 0.05 else "completed"
            done = status == "completed"
            backup_id = f"backup_{created:%Y%m%d_%H%M%S}_{n:06x}"
            batch.append(
                Snapshot(
                    backup_id=backup_id, app_id=app_id, host_id="bench",
                    purpose="pre_restore" if roll > 0.99 else "scheduled",
                    status=status,
                    storage_location="local" if rng.random() < 0.8 else "local+s3",
                    storage_key=f"{app_id}/{backup_id}.tar.zst" if done else "",
                    size_bytes=int(rng.lognormvariate(19.5, 1.5)) if done else None,
                    sha256=f"{rng.getrandbits(256):064x}" if done else "",
                    contents={"volumes": {f"{app_id}_data": {"files": 1, "bytes": 1}}},
                    created_at=created, started_at=created,
                    finished_at=created + timedelta(seconds=rng.randrange(5, 900)),
                )
            )  # fmt: skip
            if len(batch) == 5000:
                Snapshot.objects.bulk_create(batch)
                batch = []
        Snapshot.objects.bulk_create(batch)
    finally:
        created_field.auto_now_add = True
    # Incremental chains: each app's newest few completed snapshots hang off the one before.
    for app_id in apps[::5]:
        chain = list(
            Snapshot.objects.filter(app_id=app_id, status="completed").order_by("-created_at")[:6]
        )
        for child, parent in itertools.pairwise(chain):
            Snapshot.objects.filter(pk=child.pk).update(kind="incremental", parent=parent)
    verifies = [
        Run(operation="verify", app_id=app_id, state="completed", result={"valid": i % 9 != 0})
        for i, app_id in enumerate(apps)
        if i % 4 != 0
    ]
    Run.objects.bulk_create(verifies)
    Schedule.objects.bulk_create(
        Schedule(app_id=app_id, frequency="daily", time="02:00")
        for app_id in apps[: len(apps) - 20]
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE snapshots_snapshot")
        cursor.execute("VACUUM ANALYZE snapshots_run")
    print(f"inserted {rows} snapshots of {len(apps)} apps in {time.perf_counter() - started:.1f} s")


class Timings:
    """Wall-clock and CPU milliseconds of this process per request."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def time(self, client: Client, url: str) -> None:
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        self.wall.append((time.perf_counter() - started) * 1000)
        self.cpu.append((time.process_time() - started_cpu) * 1000)
        assert response.status_code == 200, url

    def p95(self) -> float:
        return statistics.quantiles(self.wall, n=100)[94]

    def __str__(self) -> str:
        return (
            f"n={len(self.wall)}  p50 {statistics.median(self.wall):6.1f} ms  "
            f"p95 {self.p95():6.1f} ms  max {max(self.wall):6.1f} ms  "
            f"(cpu p50 {statistics.median(self.cpu):5.1f} ms)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=500)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    # Its own database, not the test suite's test_<name> (a test run drops that).
    connection.settings_dict["TEST"]["NAME"] = f"bench_dashboard_{old_name}"
    connection.creation.create_test_db(verbosity=0, keepdb=True)
    try:
        with connection.cursor() as cursor:  # a kept database from an earlier run
            tables = [m._meta.db_table for m in (Snapshot, Run, Schedule)]
            cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        User.objects.filter(username="bench").delete()
        apps = [f"app{i:04d}" for i in range(args.apps)]
        fill(apps, args.rows)
        client = Client()
        client.force_login(User.objects.create_superuser("bench", password=None))
        for _ in range(3):  # warm up (templates compiled, connections open)
            assert client.get("/admin/").status_code == 200
        queries: list[str] = []

        def count(execute, sql, params, many, context):
            queries.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(count):
            page = client.get("/admin/")
        shown = page.content.decode().count('<tr class="level-')  # the table, not the host list
        assert shown == args.apps, shown
        # Interleaved, so both see the same load: the dashboard, and as the
        # anchor Django's stock admin index (no query of our tables at all).
        dashboard, anchor = Timings(), Timings()
        for _ in range(args.requests):
            dashboard.time(client, "/admin/")
            anchor.time(client, "/admin/?apps=1")
        p95 = dashboard.p95()
        verdict = "OK" if p95 <= TARGET_MS else "MISSED"
        print(
            f"dashboard   {dashboard}  queries {len(queries)}  page {len(page.content) // 1024} KiB"
        )
        print(f"stock index {anchor}")
        print(
            f"apps={args.apps} snapshots={args.rows}: dashboard p95 {p95:.1f} ms "
            f"({p95 / anchor.p95():.1f}x the stock index)  target p95 <= {TARGET_MS:.0f} ms  "
            f"{verdict}"
        )
    finally:
        if not args.keep:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    return 0 if p95 <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
