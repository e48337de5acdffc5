"""`manage.py backup list | head`: the reader closing the pipe early ends
the listing quietly (it printed a BrokenPipeError traceback). A real
subprocess on the test database, its stdout a real pipe closed after one
line."""

from __future__ import annotations

import pytest

from snapshots.models import Snapshot
from tests.conftest import manage_py

pytestmark = pytest.mark.django_db(transaction=True)


def test_list_into_a_pipe_closed_early_ends_without_a_traceback() -> None:
    Snapshot.objects.bulk_create(
        Snapshot(
            backup_id=f"backup_20260105_10{i // 60:02d}{i % 60:02d}_{i:06x}",
            app_id="wp_1",
            host_id="h",
            status="completed",
            size_bytes=i,
        )
        for i in range(3000)  # far more than a pipe's buffer holds
    )
    proc = manage_py("backup", "list")
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert first.startswith("backup_20260105_"), first
    proc.stdout.close()  # what `head -1` does once it has its line
    err = proc.stderr.read()
    code = proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code == 0, err
