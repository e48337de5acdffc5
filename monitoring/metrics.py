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
    seen = selectors.hosts_seen()
    last_seen = GaugeMetricFamily(
        "backup_host_last_seen_timestamp_seconds",
        "When the host's worker last heartbeated or finished a run (Unix time).",
        labels=["host_id"],
    )
    for host in seen:
        last_seen.add_metric([host.host_id], host.last_seen.timestamp())
    online = GaugeMetricFamily(
        "backup_hosts_online",
        "Hosts whose worker ran something within BACKUP_METRICS_HOST_SEEN_SECONDS "
        "(derived from runs until workers report a heartbeat of their own).",
        value=float(sum(1 for host in seen if host.online)),
    )
    yield from (last_seen, online)


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(DatabaseCollector())


def render() -> bytes:
    """The metrics in the Prometheus text format, read from the database now."""
    return generate_latest(REGISTRY)
