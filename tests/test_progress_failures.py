"""A progress report can never break a data path: with a progress callback
that raises on every call (as Celery's update_state did when its
get_or_create raced another insert), a backup with a database dump, a deep
verify and a restore that feeds a 13 MB dump through the exec's stdin thread
all complete, and the data comes back exact. Reports are made on the main
thread and on the exec feeder; the database is touched only by the run's own
thread and the reporter's, and the reporter closes its connection."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, connection
from django.db.backends.signals import connection_created

from engine.progress import Progress, ProgressRelay
from snapshots.models import Run, Snapshot
from snapshots.services.backup import request_backup, run_backup
from snapshots.services.restore import RestoreOptions, request_restore, run_restore
from snapshots.services.verify import request_verify, run_verify
from tests.realistic_data import load_rows, mariadb_sql, table_digest
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def raising_callback(_: Progress) -> None:
    raise IntegrityError("duplicate key value violates unique constraint (task_id)")


@pytest.fixture
def reporting_threads(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The names of the threads that made progress reports."""
    names: set[str] = set()
    original = ProgressRelay.report

    def spy(self: ProgressRelay, progress: Progress) -> None:
        names.add(threading.current_thread().name)
        original(self, progress)

    monkeypatch.setattr(ProgressRelay, "report", spy)
    return names


@pytest.fixture
def connecting_threads() -> Iterator[list[str]]:
    """The names of the threads that opened a database connection."""
    names: list[str] = []

    def record(**_: Any) -> None:
        names.append(threading.current_thread().name)

    connection_created.connect(record, weak=False)
    yield names
    connection_created.disconnect(record)


def open_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_operations_complete_when_every_progress_report_raises(
    wordpress: ComposeStack, settings: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    reporting_threads: set[str], connecting_threads: list[str],
) -> None:  # fmt: skip
    settings.BACKUP_ROOT = str(tmp_path / "backups")
    # The dump fed through the exec's stdin thread, which reports its bytes:
    # the downtime load (a shadow load reports nothing from its thread).
    settings.BACKUP_RESTORE_LOAD_WHILE_RUNNING = False
    caplog.set_level(logging.WARNING)
    load_rows(wordpress, "notes", rows=20_000, row_bytes=600)  # a ~13 MB dump
    before = table_digest(wordpress, "notes")
    backends_before = open_backends()

    backup = run_backup(str(request_backup(wordpress.project).pk), on_progress=raising_callback)
    assert backup.status == Snapshot.Status.COMPLETED, backup.error

    verify = run_verify(str(request_verify(backup, deep=True).pk), on_progress=raising_callback)
    assert verify.state == Run.State.COMPLETED, verify.error
    assert verify.result["valid"]

    mariadb_sql(wordpress, "UPDATE notes SET body = 'changed' WHERE id <= 5000")
    assert table_digest(wordpress, "notes") != before
    run = request_restore(wordpress.project, backup.backup_id, RestoreOptions())
    restored = run_restore(str(run.pk), on_progress=raising_callback)
    assert restored.state == Run.State.COMPLETED, restored.error
    assert table_digest(wordpress, "notes") == before

    # Reports came from the main thread and from the exec's stdin feeder...
    assert "exec-stdin" in reporting_threads and "MainThread" in reporting_threads
    # ... yet only the main thread and the reporters touched the database,
    assert {n for n in connecting_threads if not n.startswith("progress-")} <= {"MainThread"}
    assert any(n.startswith("progress-") for n in connecting_threads)
    # ... and every reporter closed its connection when it ended.
    assert open_backends() == backends_before
    # Each reporter logged the failing callback once, not once per report.
    failures = [r for r in caplog.records if "progress reporting failed" in r.getMessage()]
    assert 1 <= len(failures) <= 5, len(failures)  # backup, verify, restore, safety backup
    # The run rows still got their progress.
    assert Run.objects.get(pk=restored.pk).phase == "done"
