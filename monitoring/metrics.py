"""The Prometheus metrics, built from the database at each scrape by a custom
collector (monitoring/selectors.py does the reads). A registry of its own:
the process, platform and GC collectors of prometheus-client's default one
would differ between web processes, which must all answer alike."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from fleet.selectors import list_hosts
from monitoring import selectors
from snapshots.models import Run

APP = ["app_id", "host_id"]


class DatabaseCollector(Collector):
    def describe(self) -> Iterable[Metric]:
        return []  # nothing to query when registered; the names come at scrape time

    def collect(self) -> Iterator[Metric]:
        yield from _last_backup()
        yield from _runs()
        yield from _storage()
        yield from _schedules()
        yield from _hosts()


def _last_backup() -> Iterator[Metric]:
    success = GaugeMetricFamily(
        "backup_app_last_success_timestamp_seconds",
        "When the app's newest completed backup finished (Unix time).",
        labels=APP,
    )
    size = GaugeMetricFamily(
        "backup_app_last_backup_size_bytes",
        "Size of the app's newest completed backup (the stored archive).",
        labels=APP,
    )
    duration = GaugeMetricFamily(
        "backup_app_last_backup_duration_seconds",
        "How long the app's newest completed backup took.",
        labels=APP,
    )
    for last in selectors.last_backups():
        labels = [last.app_id, last.host_id]
        success.add_metric(labels, last.finished_at.timestamp())
        if last.size_bytes is not None:
            size.add_metric(labels, float(last.size_bytes))
        if last.duration_seconds is not None:
            duration.add_metric(labels, last.duration_seconds)
    yield from (success, size, duration)


def _runs() -> Iterator[Metric]:
    failures = CounterMetricFamily(
        "backup_app_failures",
        "Failed runs (backup, verify, restore, upload) of the app.",
        labels=[*APP, "operation"],
    )
    durations = SummaryMetricFamily(
        "backup_run_duration_seconds",
        "Completed runs of the app per operation: count and summed duration.",
        labels=[*APP, "operation"],
    )
    for totals in selectors.run_totals():
        labels = [totals.app_id, totals.host_id, totals.operation]
        if totals.state == Run.State.FAILED:
            failures.add_metric(labels, float(totals.count))
        else:
            durations.add_metric(labels, count_value=totals.count, sum_value=totals.seconds)
    yield from (failures, durations)


def _storage() -> Iterator[Metric]:
    stored = GaugeMetricFamily(
        "backup_storage_bytes",
        "Bytes of completed snapshots held by the storage location.",
        labels=["location"],
    )
    count = GaugeMetricFamily(
        "backup_storage_snapshots",
        "Completed snapshots with a copy in the storage location.",
        labels=["location"],
    )
    free = GaugeMetricFamily(
        "backup_storage_free_bytes",
        "Free space where the location writes (absent for S3: a bucket has none).",
        labels=["location"],
    )
    for totals in selectors.storage_totals():
        stored.add_metric([totals.location], float(totals.size_bytes))
        count.add_metric([totals.location], float(totals.snapshots))
        if totals.free_bytes is not None:
            free.add_metric([totals.location], float(totals.free_bytes))
    yield from (stored, count, free)


def _schedules() -> Iterator[Metric]:
    misses = CounterMetricFamily(
        "backup_schedule_misses",
        "Scheduled backups that did not happen: skipped (the app stayed busy past the "
        "wait) or missed (no completed backup in time: the backup_missed alarm).",
        labels=["schedule_id", "app_id", "reason"],
    )
    for row in selectors.schedule_misses():
        misses.add_metric([str(row.schedule_id), row.app_id, row.reason], float(row.count))
    yield misses


def _hosts() -> Iterator[Metric]:
    """From the fleet's host rows (each worker heartbeats its own): a host
    is online while its last heartbeat is younger than
    BACKUP_HOST_OFFLINE_SECONDS, the rule that refuses new work for it."""
    hosts = list_hosts()
    last_seen = GaugeMetricFamily(
        "backup_host_last_seen_timestamp_seconds",
        "When the host's worker last heartbeated (Unix time).",
        labels=["host_id"],
    )
    up = GaugeMetricFamily(
        "backup_host_online", "1 while the host's worker heartbeats, else 0.", labels=["host_id"]
    )
    inventory_age = GaugeMetricFamily(
        "backup_host_inventory_age_seconds",
        "Age of the host's stored inventory (apps, volumes); absent: never reported.",
        labels=["host_id"],
    )
    for state in hosts:
        host = state.host
        if host.last_heartbeat is not None:
            last_seen.add_metric([host.id], host.last_heartbeat.timestamp())
        up.add_metric([host.id], 1.0 if state.online else 0.0)
        if state.inventory_age_seconds is not None:
            inventory_age.add_metric([host.id], state.inventory_age_seconds)
    online = sum(1 for state in hosts if state.online)
    yield from (last_seen, up, inventory_age)
    yield GaugeMetricFamily("backup_hosts_online", "Hosts whose worker heartbeats.", online)
    yield GaugeMetricFamily(
        "backup_hosts_offline",
        "Registered hosts whose worker stopped heartbeating (new work for their apps is refused).",
        float(len(hosts) - online),
    )


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DatabaseCollector())


def render() -> bytes:
    """The metrics in the Prometheus text format, read from the database now."""
    return generate_latest(REGISTRY)
