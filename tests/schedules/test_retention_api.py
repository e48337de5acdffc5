"""GET /api/v1/backup/retention/preview?app_id=: the envelope, what would go
and why, bytes freed, what stays; 400s for a missing, malformed or unknown
app; X-API-Key required; nothing deleted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from schedules.models import Schedule
from snapshots.models import Snapshot
from snapshots.services.api_keys import create_api_key
from tests.api.conftest import API, envelope
from tests.schedules.retention_helpers import files_of, make_stored

pytestmark = pytest.mark.django_db
APP = "preview_app"
URL = f"{API}/retention/preview"


@pytest.fixture
def api() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=create_api_key("retention tests")[1])
    return client


@pytest.fixture(autouse=True)
def backup_root(settings: Any, tmp_path: Path) -> Path:
    settings.BACKUP_ROOT = tmp_path / "backups"
    return settings.BACKUP_ROOT


def test_preview_shows_what_would_go_why_and_the_bytes(api: APIClient) -> None:
    Schedule.objects.create(app_id=APP, keep_last=2, timezone="Europe/Berlin")
    snaps = [make_stored(APP, days) for days in (0.1, 1, 2, 3)]
    failed = make_stored(APP, 30, status=Snapshot.Status.FAILED)

    response = api.get(URL, {"app_id": APP})
    data = envelope(response, 200)

    gone = {s.backup_id for s in snaps[2:]} | {failed.backup_id}
    assert {row["backup_id"] for row in data["remove"]} == gone
    assert {row["backup_id"] for row in data["keep"]} == {s.backup_id for s in snaps[:2]}
    assert data["remove_count"] == 3 and data["keep_count"] == 2
    assert data["freed_bytes"] == sum(s.size_bytes for s in snaps[2:])
    assert response.json()["message"] == (
        f"3 snapshot(s) would be removed, freeing {data['freed_bytes']} bytes"
    )
    by_id = {row["backup_id"]: row for row in data["remove"] + data["keep"]}
    assert by_id[failed.backup_id]["reasons"] == ["failed snapshot older than 7 days (30 days old)"]
    assert by_id[snaps[2].backup_id]["reasons"] == [
        f"scheduled snapshot kept by no rule of schedule {Schedule.objects.get().pk}"
    ]
    assert any("keep_last 2" in r for r in by_id[snaps[1].backup_id]["reasons"])
    assert data["policies"][0]["keep_last"] == 2
    assert data["policies"][0]["timezone"] == "Europe/Berlin"
    assert (data["failed_days"], data["pre_restore_days"]) == (7, 14)
    row = by_id[snaps[0].backup_id]
    assert set(row) == {
        "backup_id", "created_at", "status", "purpose", "parent_backup_id", "size_bytes",
        "verified", "reasons",
    }  # fmt: skip
    # A preview deletes nothing.
    assert Snapshot.objects.filter(app_id=APP).count() == 5
    assert all(p.exists() for s in snaps for p in files_of(s))


def test_an_app_with_snapshots_and_no_schedule_keeps_everything(api: APIClient) -> None:
    make_stored(APP, 400)
    data = envelope(api.get(URL, {"app_id": APP}), 200)
    assert data["remove"] == [] and data["freed_bytes"] == 0 and data["policies"] == []
    assert "no retention rule" in " ".join(data["keep"][0]["reasons"])


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({}, "required"),
        ({"app_id": ""}, "blank"),
        ({"app_id": "../etc/passwd"}, "not a valid app id"),
        ({"app_id": "nobody_here"}, "unknown app 'nobody_here'"),
        ({"app_id": APP, "dry": "1"}, "unknown query parameter"),
    ],
)
def test_bad_queries_are_400_naming_the_field(
    api: APIClient, query: dict[str, str], words: str
) -> None:
    make_stored(APP, 1)
    data = envelope(api.get(URL, query), 400)
    field = "dry" if "dry" in query else "app_id"
    assert words in " ".join(data[field]), data


def test_an_api_key_is_required() -> None:
    make_stored(APP, 1)
    create_api_key("someone's")
    envelope(APIClient().get(URL, {"app_id": APP}), 401)
    wrong = APIClient()
    wrong.credentials(HTTP_X_API_KEY="not-a-key")
    envelope(wrong.get(URL, {"app_id": APP}), 401)
