"""GET /metrics: parsed by prometheus-client's own parser, every value checked
against the database rows it comes from (computed here in Python, not by
the SQL the endpoint uses), a constant number of queries whatever the number
of apps, and access by bearer token, allow-list or API key only."""

from __future__ import annotations

import secrets
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from schedules.models import Notification, Schedule, ScheduleFiring
from snapshots.models import Run, Snapshot
from snapshots.services.api_keys import create_api_key, revoke_api_key

TOKEN = "metrics-" + "t" * 40
T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


@pytest.fixture
def metrics_settings(settings: Any, tmp_path: Path) -> Any:
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_METRICS_TOKEN = TOKEN
    settings.BACKUP_METRICS_ALLOW = []
    return settings


def scrape(client: Client | None = None, **headers: str) -> dict[str, Any]:
    """{sample name: {frozenset(labels): value}} of one authorised scrape."""
    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[frozenset, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[sample.name][frozenset(sample.labels.items())] = sample.value
    return samples


def labels(**values: str) -> frozenset:
    return frozenset(values.items())


_serial = iter(range(10**6))


def snapshot(
    app_id: str,
    status: str = "completed",
    minutes: int = 0,
    seconds: int = 30,
    size: int | None = 1000,
    host_id: str = "host-a",
    **fields: Any,
) -> Snapshot:
    started = T0 + timedelta(minutes=minutes)
    return Snapshot.objects.create(
        backup_id=f"backup_{next(_serial):06d}_{secrets.token_hex(3)}", app_id=app_id,
        host_id=host_id, status=status, size_bytes=size, started_at=started,
        finished_at=started + timedelta(seconds=seconds), **fields,
    )  # fmt: skip


def run(app_id: str, operation: str, state: str, seconds: float, host_id: str = "host-a",
        heartbeat_at: datetime | None = None) -> Run:  # fmt: skip
    started = timezone.now() - timedelta(hours=1)
    return Run.objects.create(
        operation=operation, app_id=app_id, state=state, host_id=host_id, started_at=started,
        finished_at=started + timedelta(seconds=seconds), heartbeat_at=heartbeat_at,
    )  # fmt: skip


def populate(apps: int) -> None:
    for number in range(apps):
        app = f"app{number:03d}"
        snapshot(app, minutes=0, seconds=20, size=100 + number)
        snapshot(app, minutes=60, seconds=45 + number, size=5000 + number)  # the newest
        snapshot(app, status="failed", minutes=120, size=None)  # newer, but failed
        run(app, "backup", "completed", 45.5)
        run(app, "backup", "failed", 3)
        run(app, "verify", "completed", 2.25)
        run(app, "restore", "completed", 80)
        run(app, "restore", "completed", 20)
        run(app, "restore", "failed", 7)
        run(app, "backup", "running", 1)  # not finished: counted nowhere


@pytest.mark.django_db
def test_metrics_values_are_the_database_rows(metrics_settings: Any) -> None:
    populate(3)
    snapshot("other", host_id="host-b", minutes=5, seconds=12, size=777)
    run("other", "backup", "completed", 12, host_id="host-b",
        heartbeat_at=timezone.now() - timedelta(days=5))  # fmt: skip
    Run.objects.filter(host_id="host-b").update(finished_at=timezone.now() - timedelta(days=5))
    schedule = Schedule.objects.create(app_id="app000")
    for hour, state in enumerate(["skipped", "skipped", "completed", "failed"]):
        ScheduleFiring.objects.create(
            schedule=schedule, scheduled_for=T0 + timedelta(hours=hour), state=state
        )
    Notification.objects.create(
        event="backup_missed", app_id="app000", schedule=schedule, title="missed"
    )
    Notification.objects.create(
        event="backup_failed", app_id="app000", schedule=schedule, title="x"
    )

    samples = scrape()

    # Last success, size and duration: each (app, host)'s newest completed snapshot.
    newest: dict[tuple[str, str], Snapshot] = {}
    for row in Snapshot.objects.filter(status="completed").order_by("finished_at"):
        newest[(row.app_id, row.host_id)] = row
    assert len(newest) == 4
    for (app, host), row in newest.items():
        key = labels(app_id=app, host_id=host)
        assert samples["backup_app_last_success_timestamp_seconds"][key] == pytest.approx(
            row.finished_at.timestamp()
        )
        assert samples["backup_app_last_backup_size_bytes"][key] == row.size_bytes
        assert samples["backup_app_last_backup_duration_seconds"][key] == pytest.approx(
            row.duration_seconds
        )
    assert (
        samples["backup_app_last_backup_size_bytes"][labels(app_id="app002", host_id="host-a")]
        == 5002
    )

    # Failures and completed-run counts and durations, per app and operation.
    failed: dict[frozenset, int] = defaultdict(int)
    count: dict[frozenset, int] = defaultdict(int)
    total: dict[frozenset, float] = defaultdict(float)
    for row in Run.objects.all():
        key = labels(app_id=row.app_id, host_id=row.host_id, operation=row.operation)
        if row.state == "failed":
            failed[key] += 1
        elif row.state == "completed":
            count[key] += 1
            total[key] += (row.finished_at - row.started_at).total_seconds()
    assert samples["backup_app_failures_total"] == failed
    assert samples["backup_run_duration_seconds_count"] == count
    assert samples["backup_run_duration_seconds_sum"] == pytest.approx(total)
    restore = labels(app_id="app001", host_id="host-a", operation="restore")
    assert (count[restore], total[restore]) == (2, 100.0)

    # Bytes stored locally: every completed snapshot (all are local here).
    local = labels(location="local")
    completed = Snapshot.objects.filter(status="completed")
    assert samples["backup_storage_bytes"][local] == sum(s.size_bytes for s in completed)
    assert samples["backup_storage_snapshots"][local] == completed.count()
    assert samples["backup_storage_free_bytes"][local] > 0

    # Schedule misses: skipped firings and missed-backup alarms, nothing else.
    sid = str(schedule.pk)
    assert samples["backup_schedule_misses_total"] == {
        labels(schedule_id=sid, app_id="app000", reason="skipped"): 2,
        labels(schedule_id=sid, app_id="app000", reason="missed"): 1,
    }

    # Hosts come from the fleet's host rows, not from runs (no host row here:
    # host-a and host-b only ran things); test_hosts_are_counted_from_host_rows.
    assert samples["backup_hosts_online"] == {frozenset(): 0}
    assert samples["backup_hosts_offline"] == {frozenset(): 0}


@pytest.mark.django_db
def test_hosts_are_counted_from_host_rows(metrics_settings: Any) -> None:
    """Online/offline by each worker's own heartbeat (the rule that refuses
    new work), whatever runs say: host-c never ran anything."""
    from django.db.models.functions import Now

    from fleet.models import Host
    from tests.fleet.helpers import age_host

    for host in ("host-a", "host-b", "host-c"):
        Host.objects.create(id=host, last_heartbeat=Now(), inventory_at=Now())
    Host.objects.create(id="host-new")  # registered, never heartbeated
    age_host("host-b", heartbeat_seconds=3600, inventory_seconds=7200)
    run("app000", "backup", "completed", 5, host_id="host-b")  # a run is no heartbeat
    samples = scrape()
    assert samples["backup_hosts_online"] == {frozenset(): 2}
    assert samples["backup_hosts_offline"] == {frozenset(): 2}
    assert samples["backup_host_online"] == {
        labels(host_id="host-a"): 1, labels(host_id="host-b"): 0,
        labels(host_id="host-c"): 1, labels(host_id="host-new"): 0,
    }  # fmt: skip
    seen = samples["backup_host_last_seen_timestamp_seconds"]
    assert set(seen) == {labels(host_id=h) for h in ("host-a", "host-b", "host-c")}
    assert seen[labels(host_id="host-a")] - seen[labels(host_id="host-b")] == pytest.approx(
        3600, abs=60
    )
    assert samples["backup_host_inventory_age_seconds"][labels(host_id="host-b")] >= 7200


def _queries_for_a_scrape() -> int:
    with CaptureQueriesContext(connection) as queries:
        scrape()
    return len(queries)


@pytest.mark.django_db
def test_query_count_does_not_grow_with_the_number_of_apps(metrics_settings: Any) -> None:
    populate(2)
    few = _queries_for_a_scrape()
    populate(40)  # app000..app039: 38 more apps
    many = _queries_for_a_scrape()
    assert few == many and 5 <= many <= 10, (few, many)
    assert len(scrape()["backup_app_last_backup_size_bytes"]) == 40


@pytest.mark.django_db
def test_empty_database_scrapes_cleanly(metrics_settings: Any) -> None:
    samples = scrape()
    assert samples["backup_hosts_online"] == {frozenset(): 0}
    assert samples["backup_storage_bytes"][labels(location="local")] == 0


@pytest.mark.django_db
def test_access_needs_the_token_an_allowed_address_or_an_api_key(metrics_settings: Any) -> None:
    client = Client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.json()["code"] == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x")
    assert wrong.status_code == 401 and TOKEN not in wrong.content.decode()
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405

    # An allow-list: allowed addresses need nothing, others get a 403.
    metrics_settings.BACKUP_METRICS_ALLOW = ["10.1.0.0/16", "::1/128"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::ffff:10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    outside = client.get("/metrics", REMOTE_ADDR="10.2.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3")
    assert outside.status_code == 403 and outside.json()["code"] == 403
    # A wrong token is a 401 even from an allowed address: the scraper is misconfigured.
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3",
                      HTTP_AUTHORIZATION="Bearer nope").status_code == 401  # fmt: skip

    # Any API key (read is the least scope, and it covers metrics).
    key, raw = create_api_key("prometheus", scope="read")
    assert client.get("/metrics", REMOTE_ADDR="10.9.9.9", HTTP_X_API_KEY=raw).status_code == 200
    revoke_api_key(key)
    assert client.get("/metrics", REMOTE_ADDR="10.9.9.9", HTTP_X_API_KEY=raw).status_code == 401

    # No token configured: no bearer token works, not even an empty one.
    metrics_settings.BACKUP_METRICS_TOKEN = ""
    metrics_settings.BACKUP_METRICS_ALLOW = []
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 401


@pytest.mark.django_db
def test_bytes_per_location_count_each_copy_where_it_is(metrics_settings: Any) -> None:
    """An S3 location is configured (no server is needed: nothing is read
    from it). local: snapshots that keep a local copy, and s3-only ones whose
    upload is not verified yet (still staged); s3: the verified copies."""
    from snapshots.models_offsite import OffsiteCopy
    from tests.offsite_helpers import configure_s3

    configure_s3(metrics_settings, {"BACKUP_S3_BUCKET": "metrics",
                                    "BACKUP_S3_ENDPOINT_URL": "http://127.0.0.1:9"})  # fmt: skip
    local_only = snapshot("a", size=1_000)
    both = snapshot("a", minutes=1, size=20_000, storage_location="local+s3")
    offsite = snapshot("b", size=300_000, storage_location="s3")
    staged = snapshot("c", size=4_000_000, storage_location="s3")
    snapshot("c", status="failed", size=50_000_000, storage_location="s3")
    for row, state in [(both, "verified"), (offsite, "verified"), (staged, "uploading")]:
        OffsiteCopy.objects.create(
            snapshot=row, location="s3", key=f"k/{row.backup_id}", state=state,
            size_bytes=row.size_bytes,
        )  # fmt: skip
    samples = scrape()
    assert samples["backup_storage_bytes"] == {
        labels(location="local"): local_only.size_bytes + both.size_bytes + staged.size_bytes,
        labels(location="s3"): both.size_bytes + offsite.size_bytes,
    }
    assert samples["backup_storage_snapshots"] == {
        labels(location="local"): 3, labels(location="s3"): 2,
    }  # fmt: skip
    assert labels(location="s3") not in samples["backup_storage_free_bytes"]
