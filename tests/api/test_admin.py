"""The admin as an ops console: snapshots (filters, search, verify, delete
through the service), runs (read-only), API keys (shown once, revoke), policies."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from rest_framework.test import APIClient

from snapshots.models import ApiKey, AppBackupPolicy, Run, Snapshot
from tests.api.conftest import API, MakeSnapshot, envelope

pytestmark = pytest.mark.django_db
SNAPSHOTS = "/admin/snapshots/snapshot/"


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_snapshot_list_filters_search_and_columns(
    admin_client: Client, make_snapshot: MakeSnapshot
) -> None:
    from django.utils import timezone

    done = make_snapshot(app_id="alpha", size_bytes=5 * 1024 * 1024)
    Snapshot.objects.filter(pk=done.pk).update(
        started_at=timezone.now(), finished_at=timezone.now() + timezone.timedelta(seconds=75)
    )
    make_snapshot(app_id="beta", status="failed", size_bytes=None)
    page = admin_client.get(SNAPSHOTS).content.decode()
    assert done.backup_id in page and "5.0 MiB" in page and "1m 15s" in page
    for title in ("By app", "By status", "By kind", "By storage location", "By purpose"):
        assert title in page
    filtered = admin_client.get(SNAPSHOTS, {"app_id": "beta"}).content.decode()
    assert done.backup_id not in filtered and "beta" in filtered
    assert (
        done.backup_id in admin_client.get(SNAPSHOTS, {"q": done.backup_id[-6:]}).content.decode()
    )
    assert done.backup_id not in admin_client.get(SNAPSHOTS, {"status": "failed"}).content.decode()
    # Rows belong to the services: no add, and the raw bulk delete is gone.
    assert 'value="delete_selected"' not in page and 'value="verify_quick"' in page
    assert admin_client.get(f"{SNAPSHOTS}add/").status_code == 403


def test_snapshot_page_lists_its_warnings(admin_client: Client, make_snapshot: MakeSnapshot):
    warning = "volume shop_data (container shop-app-1) holds a live <PostgreSQL> data directory"
    snapshot = make_snapshot(warnings=[warning])
    detail = admin_client.get(f"{SNAPSHOTS}{snapshot.pk}/change/").content.decode()
    assert "<li>volume shop_data (container shop-app-1) holds a live &lt;PostgreSQL&gt;" in detail
    quiet = make_snapshot(minutes=1)
    page = admin_client.get(f"{SNAPSHOTS}{quiet.pk}/change/").content.decode()
    assert "field-warning_list" in page and "holds a live" not in page
    assert 'class="field-warning_count">1</td>' in admin_client.get(SNAPSHOTS).content.decode()


def test_verify_action_reports_each_result(
    admin_client: Client, stored_snapshot: Callable[..., Snapshot], backup_root: Path
) -> None:
    good = stored_snapshot(b"good archive")
    bad = stored_snapshot(b"bad archive")
    (backup_root / bad.storage_key).write_bytes(b"bad archivE")
    response = admin_client.post(
        SNAPSHOTS, {"action": "verify_quick", "_selected_action": [good.pk, bad.pk]}, follow=True
    )
    shown = messages_of(response) or re.findall(
        r'<li class="\w+">(.*?)</li>', response.content.decode()
    )
    text = " | ".join(shown)
    assert f"{good.backup_id}: valid" in text
    assert f"{bad.backup_id}: NOT valid" in text and "does not match" in text
    assert Run.objects.filter(operation="verify").count() == 2


def test_delete_action_goes_through_the_service(
    admin_client: Client, stored_snapshot: Callable[..., Snapshot], make_snapshot: MakeSnapshot,
    backup_root: Path,
) -> None:  # fmt: skip
    parent = stored_snapshot(b"parent")
    child = make_snapshot(minutes=5, kind="incremental", parent=parent)
    lonely = stored_snapshot(b"lonely", app_id="odoo001")
    response = admin_client.post(
        SNAPSHOTS,
        {"action": "delete_through_service", "_selected_action": [parent.pk, lonely.pk]},
        follow=True,
    )
    text = " | ".join(messages_of(response)) or response.content.decode()
    assert "not deleted" in text and child.backup_id in text
    assert "deleted 1 snapshot(s)" in text
    assert Snapshot.objects.filter(pk=parent.pk).exists()
    assert (backup_root / parent.storage_key).exists()
    assert not (backup_root / lonely.storage_key).exists()
    assert not Snapshot.objects.filter(pk=lonely.pk).exists()


def test_runs_are_read_only_with_progress_and_errors(
    admin_client: Client, make_snapshot: MakeSnapshot
) -> None:
    run = Run.objects.create(
        operation="backup", app_id="alpha", snapshot=make_snapshot(), state="failed",
        bytes_done=512, bytes_total=1024, error="storage 'local' is full: no space left",
    )  # fmt: skip
    page = admin_client.get("/admin/snapshots/run/").content.decode()
    assert "50% of 1.0 KiB" in page and "is full: no space left" in page
    assert admin_client.get("/admin/snapshots/run/add/").status_code == 403
    detail = admin_client.get(f"/admin/snapshots/run/{run.pk}/change/").content.decode()
    assert 'name="_save"' not in detail  # view only


def test_api_key_is_shown_once_and_can_be_revoked(admin_client: Client) -> None:
    response = admin_client.post("/admin/snapshots/apikey/add/", {"name": "ui"}, follow=True)
    text = " ".join(messages_of(response)) or response.content.decode()
    raw_key = re.search(r"bk_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", text).group(0)
    key = ApiKey.objects.get(name="ui")
    assert raw_key.startswith(f"bk_{key.prefix}_")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    envelope(client.get(f"{API}/storage"), 200)
    # Never again: not on the list, not on the key's page.
    secret = raw_key.split("_", 2)[2]
    assert secret not in admin_client.get("/admin/snapshots/apikey/").content.decode()
    assert (
        secret not in admin_client.get(f"/admin/snapshots/apikey/{key.pk}/change/").content.decode()
    )
    admin_client.post(
        "/admin/snapshots/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True
    )
    key.refresh_from_db()
    assert key.revoked_at is not None
    envelope(client.get(f"{API}/storage"), 401)


def test_policy_is_editable(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/snapshots/appbackuppolicy/add/",
        {"app_id": "alpha", "consistency": "stop", "include_databases": "on",
         "database_overrides": "{}", "incrementals_before_full": 7},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = AppBackupPolicy.objects.get(app_id="alpha")
    assert policy.consistency == "stop" and policy.include_databases
