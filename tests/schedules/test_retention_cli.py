"""manage.py retention preview|apply [--dry-run] [--all] [--json]: in this
process through call_command, and once as a real `manage.py` process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from schedules.models import Schedule
from snapshots.models import Snapshot
from tests.conftest import manage_py
from tests.schedules.retention_helpers import files_of, make_stored

APP = "cli_app"


@pytest.fixture(autouse=True)
def backup_root(settings: Any, tmp_path: Path) -> Path:
    settings.BACKUP_ROOT = tmp_path / "backups"
    return settings.BACKUP_ROOT


def _three(app_id: str = APP) -> list[Snapshot]:
    Schedule.objects.create(app_id=app_id, keep_last=1)
    return [make_stored(app_id, days) for days in (0.1, 1, 2)]


@pytest.mark.django_db
def test_preview_and_dry_run_print_the_plan_and_delete_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    snaps = _three()
    for args in (["preview", APP], ["apply", APP, "--dry-run"]):
        call_command("retention", *args)
        out = capsys.readouterr().out
        assert f"{APP}: 1 kept, 2 to remove" in out
        assert f"remove {snaps[2].backup_id}  scheduled snapshot kept by no rule" in out
        assert f"keep   {snaps[0].backup_id}  keep_last 1" in out
        assert f"would remove 2, freeing {snaps[1].size_bytes + snaps[2].size_bytes} bytes" in out
    assert Snapshot.objects.filter(app_id=APP).count() == 3
    assert all(p.exists() for s in snaps for p in files_of(s))


@pytest.mark.django_db
def test_apply_removes_and_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    snaps = _three()
    on_disk = sum(p.stat().st_size for s in snaps[1:] for p in files_of(s))  # archive + sidecar
    call_command("retention", "apply", APP, "--json")
    (body,) = json.loads(capsys.readouterr().out)
    assert sorted(body["removed"]) == sorted(s.backup_id for s in snaps[1:])
    assert body["freed_bytes"] == on_disk
    assert [row["backup_id"] for row in body["keep"]] == [snaps[0].backup_id]
    assert list(Snapshot.objects.filter(app_id=APP).values_list("pk", flat=True)) == [snaps[0].pk]


@pytest.mark.django_db
def test_all_applies_to_every_app_with_a_rule(capsys: pytest.CaptureFixture[str]) -> None:
    _three("app_one")
    _three("app_two")
    untouched = [make_stored("no_rules", days) for days in (1, 2, 3)]
    call_command("retention", "apply", "--all")
    out = capsys.readouterr().out
    assert "app_one: 1 kept, 2 to remove" in out and "app_two: 1 kept, 2 to remove" in out
    assert Snapshot.objects.filter(app_id__in=["app_one", "app_two"]).count() == 2
    assert Snapshot.objects.filter(pk__in=[s.pk for s in untouched]).count() == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["preview"], "name one app_id, or give --all"),
        (["apply", APP, "--all"], "name one app_id, or give --all"),
        (["preview", "Bad/Id"], "not a valid app id"),
        (["apply", "nobody_here"], "unknown app 'nobody_here'"),
    ],
)
def test_bad_arguments_are_clear_errors(args: list[str], words: str) -> None:
    with pytest.raises(CommandError, match=words):
        call_command("retention", *args)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_manage_py_process_applies_retention() -> None:
    snaps = _three()
    proc = manage_py("retention", "apply", APP)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "removed 2, freed" in out
    assert not any(p.exists() for s in snaps[1:] for p in files_of(s))
    assert Snapshot.objects.filter(app_id=APP).count() == 1
