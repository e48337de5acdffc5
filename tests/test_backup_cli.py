"""The management command's output and the low-priority setting."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from django.core.management import call_command

from engine.progress import Progress
from snapshots.management.commands.backup import ProgressBar
from snapshots.models import Snapshot


class _Terminal(io.StringIO):
    """Stands in for a terminal: a real one cannot be attached to pytest."""

    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_and_stays_quiet_otherwise() -> None:
    terminal = _Terminal()
    bar = ProgressBar(terminal)
    bar(Progress("archiving", 512 * 1024 * 1024, 1024 * 1024 * 1024))
    bar.done()
    text = terminal.getvalue()
    assert text.startswith("\rarchiving") and "50.0%" in text and "512.0 MiB" in text
    assert "#" * 15 in text and text.endswith("\n")
    pipe = io.StringIO()
    ProgressBar(pipe)(Progress("archiving", 1, 2))
    assert pipe.getvalue() == ""


@pytest.mark.django_db
def test_list_filters_and_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    Snapshot.objects.create(backup_id="backup_20260105_103000_3fa2c1", app_id="wp_1",
                            host_id="h", status="completed", size_bytes=10)  # fmt: skip
    Snapshot.objects.create(backup_id="backup_20260105_103001_3fa2c2", app_id="odoo_1",
                            host_id="h", status="failed")  # fmt: skip
    call_command("backup", "list", "--app", "wp_1", "--json")
    rows = json.loads(capsys.readouterr().out)
    assert [r["backup_id"] for r in rows] == ["backup_20260105_103000_3fa2c1"]
    assert rows[0]["warnings"] == []
    call_command("backup", "list", "--status", "failed")
    assert "odoo_1" in capsys.readouterr().out
    Snapshot.objects.create(backup_id="backup_20260105_103002_3fa2c3", app_id="wp_1",
                            host_id="other", status="completed")  # fmt: skip
    call_command("backup", "list", "--app", "wp_1", "--host", "other", "--json")
    rows = json.loads(capsys.readouterr().out)
    assert [(r["backup_id"], r["host_id"]) for r in rows] == [
        ("backup_20260105_103002_3fa2c3", "other")
    ]


@pytest.mark.django_db
def test_list_shows_each_snapshots_kind_and_chain(capsys: pytest.CaptureFixture[str]) -> None:
    full = Snapshot.objects.create(backup_id="backup_20260105_103000_3fa2c1", app_id="wp_1",
                                   host_id="h", status="completed", bytes_full=100,
                                   bytes_written=100)  # fmt: skip
    Snapshot.objects.create(backup_id="backup_20260105_103001_3fa2c2", app_id="wp_1", host_id="h",
                            status="completed", kind=Snapshot.Kind.INCREMENTAL, parent=full,
                            chain_position=1, bytes_full=100, bytes_written=7)  # fmt: skip
    Snapshot.objects.create(backup_id="backup_20260105_103002_3fa2c3", app_id="wp_1", host_id="h",
                            status="completed",
                            purpose=Snapshot.Purpose.PRE_RESTORE)  # fmt: skip
    call_command("backup", "list", "--json")
    rows = {r["backup_id"]: r for r in json.loads(capsys.readouterr().out)}
    incremental = rows["backup_20260105_103001_3fa2c2"]
    assert incremental["kind"] == "incremental" and incremental["chain_length"] == 2
    assert incremental["parent_backup_id"] == full.backup_id
    assert (incremental["bytes_written"], incremental["bytes_full"]) == (7, 100)
    assert rows[full.backup_id]["parent_backup_id"] is None
    call_command("backup", "list")
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert " full " in lines[full.backup_id]
    assert " incr #2 " in lines["backup_20260105_103001_3fa2c2"]
    assert lines["backup_20260105_103002_3fa2c3"].endswith("safety backup")


@pytest.mark.django_db
def test_list_shows_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    warning = "volume wp_db (container wp-db-1) holds a live MySQL data directory (ibdata1)"
    Snapshot.objects.create(backup_id="backup_20260105_103000_3fa2c1", app_id="wp_1",
                            host_id="h", status="completed", warnings=[warning])  # fmt: skip
    call_command("backup", "list", "--json")
    assert json.loads(capsys.readouterr().out)[0]["warnings"] == [warning]
    call_command("backup", "list")
    assert capsys.readouterr().out.rstrip().endswith("1 warning(s)")


def test_backup_runs_at_low_cpu_and_io_priority() -> None:
    code = (
        "from engine.priority import lower_priority, io_priority; import os;"
        "lower_priority(10, 'best-effort', 7); print(os.nice(0), *io_priority())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["10", "2", "7"]
    code = (
        "from engine.priority import lower_priority, io_priority;"
        "lower_priority(0, 'idle'); print(*io_priority())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "3"
