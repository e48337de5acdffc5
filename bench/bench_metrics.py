"""GET /metrics with 500 apps, 100,000 snapshots and their runs in PostgreSQL
(run by hand).

    .venv/bin/python bench/bench_metrics.py [--apps 500] [--rows 100000] [--scrapes 50] [--keep]

Creates its own database (test_<name> of DATABASE_URL), fills it with
snapshots of APPS apps over two years and one run per snapshot (backups,
some verifies and restores, a share failed), then times whole scrapes
through the Django test client (token check, the grouped queries, the text
rendering) and counts their queries. Target: p95 < 1 s (Prometheus' default
scrape timeout is 10 s; a scrape every 15-60 s must stay a small load)."""

from __future__ import annotations

import argparse
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

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from snapshots.models import Run, Snapshot  # noqa: E402

TARGET_P95_MS = 1000.0
TOKEN = "bench-metrics-token"  # noqa: S105 - a throwaway database's


def fill(apps: int, rows: int) -> None:
    rng = random.Random(42)
    names = [f"app_{i:04d}" for i in range(apps)]
    now = timezone.now()
    created_field = Snapshot._meta.get_field("created_at")
    created_field.auto_now_add = False  # keep the spread-out times we set (bench only)
    started = time.perf_counter()
    snapshots: list[Snapshot] = []
    try:
        for n in range(rows):
            created = now - timedelta(seconds=rng.randrange(0, 2 * 365 * 86400))
            status = rng.choice(["completed"] * 94 + ["failed"] * 6)
            app_id = rng.choice(names)
            done = status == "completed"
            snapshots.append(
                Snapshot(
                    backup_id=f"backup_{created:%Y%m%d_%H%M%S}_{n:06x}", app_id=app_id,
                    host_id=f"host-{hash(app_id) % 5}", status=status,
                    storage_location="local" if rng.random() < 0.9 else "local+s3",
                    size_bytes=int(rng.lognormvariate(19.5, 1.5)) if done else None,
                    created_at=created, started_at=created,
                    finished_at=created + timedelta(seconds=rng.randrange(5, 900)),
                )
            )  # fmt: skip
        Snapshot.objects.bulk_create(snapshots, batch_size=5000)
    finally:
        created_field.auto_now_add = True
    runs = [
        Run(
            operation=rng.choice(["backup"] * 8 + ["verify", "restore"]),
            app_id=s.app_id,
            state="completed" if s.status == "completed" else "failed",
            host_id=s.host_id,
            started_at=s.started_at,
            finished_at=s.finished_at,
            heartbeat_at=s.finished_at,
        )
        for s in snapshots
    ]
    Run.objects.bulk_create(runs, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE snapshots_snapshot")
        cursor.execute("VACUUM ANALYZE snapshots_run")
    print(f"inserted {rows} snapshots and {rows} runs in {time.perf_counter() - started:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=500)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    setup_test_environment()
    settings.BACKUP_METRICS_TOKEN = TOKEN
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, keepdb=True)
    try:
        with connection.cursor() as cursor:  # a kept database's rows, whatever refers to them
            cursor.execute("TRUNCATE snapshots_snapshot, snapshots_run CASCADE")
        fill(args.apps, args.rows)
        client = Client()
        auth = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
        for _ in range(3):  # warm up
            client.get("/metrics", **auth)
        queries: list[tuple[float, str]] = []

        def timed(execute, sql, params, many, context):
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                queries.append((time.perf_counter() - started, sql))

        with connection.execute_wrapper(timed):
            body = client.get("/metrics", **auth).content
        wall: list[float] = []
        for _ in range(args.scrapes):
            started = time.perf_counter()
            response = client.get("/metrics", **auth)
            wall.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        p95 = statistics.quantiles(wall, n=100)[94]
        lines = body.count(b"\n")
        ok = p95 < TARGET_P95_MS
        print(
            f"scrape n={len(wall)}  p50 {statistics.median(wall):6.1f} ms  p95 {p95:6.1f} ms  "
            f"max {max(wall):6.1f} ms  {len(queries)} queries  {len(body) / 1024:.0f} KiB  "
            f"{lines} lines  target p95 < {TARGET_P95_MS:.0f} ms  "
            f"{'OK' if ok else 'MISSED'}"
        )
        for seconds, sql in sorted(queries, reverse=True)[:3]:
            print(f"  query {seconds * 1000:6.1f} ms: {sql[:150]}…")
    finally:
        if not args.keep:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
