"""The console's actions through the services: back up now (incremental
refused clearly), verify, the restore confirmation (what is replaced, the
typed app id), delete, the run page and its JSON, and who may do what."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.test import Client

from fleet.services import refresh_inventory
from snapshots.models import Run, Snapshot
from tests.api.conftest import MakeSnapshot

pytestmark = pytest.mark.django_db

CONTENTS = {
    "volumes": {"shop_db": {"files": 10, "bytes": 100}, "shop_uploads": {"files": 2, "bytes": 5}},
    "databases": [{"container": "shop-db-1", "engine": "mariadb", "database": "shop"}],
    "config_files": ["compose.yaml"],
}


def test_backup_now_offers_both_kinds_and_refuses_others(admin_client: Client) -> None:
    form = admin_client.get("/admin/console/apps/shop/backup/").content.decode()
    assert 'value="local"' in form and 'value="full"' in form and 'value="incremental"' in form
    answer = admin_client.post(
        "/admin/console/apps/shop/backup/",
        {"backup_type": "differential", "storage_location": "local"},
    )
    assert answer.status_code == 200
    assert "&quot;differential&quot; is not a backup type" in answer.content.decode()
    assert not Run.objects.exists() and not Snapshot.objects.exists()


@pytest.mark.docker
def test_backup_now_passes_the_kind_on(admin_client: Client, host_app, settings) -> None:
    settings.BACKUP_TASK_QUEUE = "console-tests-nobody"  # queued only; no worker takes it
    refresh_inventory()  # the worker's report of its host: the console reads the inventory
    answer = admin_client.post(
        f"/admin/console/apps/{host_app.project}/backup/",
        {"backup_type": "incremental", "storage_location": "local"},
    )
    run = Run.objects.get(operation="backup")
    assert answer.status_code == 302 and answer.url == f"/admin/console/runs/{run.pk}/"
    assert run.options["backup_type"] == "incremental"


def test_backup_now_offers_every_configured_location(admin_client: Client, settings) -> None:
    # Only the settings: the form lists locations, it connects to none.
    settings.BACKUP_S3_STORAGES = {"s3": {"bucket": "offsite"}}
    form = admin_client.get("/admin/console/apps/shop/backup/").content.decode()
    for value, label in (
        ("local", "this host&#x27;s disk only"),
        ("s3", "off-site only"),
        ("local+s3", "this host&#x27;s disk and off-site (s3)"),
    ):
        assert f'value="{value}"' in form and f">{value}: {label}" in form, value
    settings.BACKUP_S3_STORAGES = {}
    form = admin_client.get("/admin/console/apps/shop/backup/").content.decode()
    assert 'value="local"' in form and "s3" not in form.split('id="backup-now"')[1]


def test_backup_now_unknown_location_is_a_form_error(admin_client: Client) -> None:
    answer = admin_client.post(
        "/admin/console/apps/shop/backup/", {"backup_type": "full", "storage_location": "mars"}
    )
    assert "Select a valid choice" in answer.content.decode() and not Run.objects.exists()


def test_restore_confirmation_says_what_is_replaced_and_wants_the_app_id(
    admin_client: Client, make_snapshot: MakeSnapshot, settings
) -> None:
    settings.BACKUP_TASK_QUEUE = "console-tests-nobody"
    snapshot = make_snapshot(app_id="shop", contents=CONTENTS)
    url = f"/admin/console/snapshots/{snapshot.backup_id}/restore/"
    page = admin_client.get(url).content.decode()
    for needle in ("shop_db", "shop_uploads", "mariadb shop in shop-db-1", "safety backup"):
        assert needle in page, needle

    wrong = admin_client.post(url, {"confirm_app_id": "shops", "stop_app": "on"})
    assert "type the app id exactly (shop)" in wrong.content.decode()
    assert not Run.objects.filter(operation="restore").exists()

    done = admin_client.post(
        url, {"confirm_app_id": "shop", "stop_app": "on", "backup_before_restore": "on"}
    )
    run = Run.objects.get(operation="restore")
    assert done.status_code == 302 and done.url == f"/admin/console/runs/{run.pk}/"
    assert run.options == {
        "stop_app": True, "restore_database": False,
        "backup_before_restore": True, "accept_no_database_rollback": False,
    }  # fmt: skip


def test_restore_refused_by_the_service_is_shown(
    admin_client: Client, make_snapshot: MakeSnapshot
) -> None:
    snapshot = make_snapshot(app_id="shop", status="failed")
    answer = admin_client.post(
        f"/admin/console/snapshots/{snapshot.backup_id}/restore/", {"confirm_app_id": "shop"}
    )
    assert "only completed snapshots can be restored" in answer.content.decode()
    assert not Run.objects.exists()


def test_verify_quick_shows_a_mismatch_as_a_failure(
    admin_client: Client, stored_snapshot, backup_root
) -> None:
    snapshot = stored_snapshot(b"archive bytes", app_id="shop")
    (backup_root / snapshot.storage_key).write_bytes(b"tampered bytes")
    answer = admin_client.post(f"/admin/console/snapshots/{snapshot.backup_id}/verify/")
    run = Run.objects.get(operation="verify")
    assert answer.url == f"/admin/console/runs/{run.pk}/"
    status = admin_client.get(f"/admin/console/runs/{run.pk}/status.json").json()
    assert status["terminal"] and status["result"]["valid"] is False
    page = admin_client.get(answer.url).content.decode()
    assert "Verify of <strong>shop</strong>" in page and "&quot;valid&quot;: false" in page
    assert 'class="state-failed">failed<' in page and "Snapshot NOT valid" in page


def test_run_json_reports_progress(admin_client: Client, make_snapshot: MakeSnapshot) -> None:
    snapshot = make_snapshot(app_id="shop", status="running")
    run = Run.objects.create(
        operation="backup", app_id="shop", snapshot=snapshot,
        state="running", phase="volumes", bytes_done=50, bytes_total=200,
    )  # fmt: skip
    status = admin_client.get(f"/admin/console/runs/{run.pk}/status.json").json()
    assert status["state"] == "running" and status["progress"] == 0.25
    assert status["progress_text"] == "25% of 200 B" and status["terminal"] is False
    page = admin_client.get(f"/admin/console/runs/{run.pk}/").content.decode()
    assert 'http-equiv="refresh"' in page and "run_poll.js" in page  # works without JS too
    assert admin_client.get("/admin/console/runs/not-a-uuid/").status_code == 404


def test_delete_through_the_service_and_refused_when_depended_on(
    admin_client: Client, make_snapshot: MakeSnapshot
) -> None:
    parent = make_snapshot(app_id="shop")
    child = make_snapshot(app_id="shop", minutes=1, kind="incremental", parent=parent)
    refused = admin_client.post(f"/admin/console/snapshots/{parent.backup_id}/delete/")
    assert any("depend on it" in str(m) for m in get_messages(refused.wsgi_request))
    assert Snapshot.objects.filter(pk=parent.pk).exists()
    gone = admin_client.post(f"/admin/console/snapshots/{child.backup_id}/delete/")
    assert gone.status_code == 302 and not Snapshot.objects.filter(pk=child.pk).exists()


def test_actions_need_permissions(make_snapshot: MakeSnapshot) -> None:
    snapshot = make_snapshot(app_id="shop")
    staff = User.objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(f"/admin/console/snapshots/{snapshot.backup_id}/restore/").status_code == 403
    assert client.post(f"/admin/console/snapshots/{snapshot.backup_id}/delete/").status_code == 403
    assert client.get("/admin/console/apps/shop/backup/").status_code == 403
    assert Snapshot.objects.filter(pk=snapshot.pk).exists()
    anonymous = Client().get("/admin/console/apps/shop/backup/")
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous.url


@pytest.mark.docker
def test_backup_now_of_an_app_not_on_this_host_is_refused_clearly(
    admin_client: Client, docker_client
) -> None:
    answer = admin_client.post(
        "/admin/console/apps/nosuchapp-console/backup/",
        {"backup_type": "full", "storage_location": "local"},
    )
    page = answer.content.decode()
    assert answer.status_code == 200 and "errornote" in page
    assert "no app &#x27;nosuchapp-console&#x27; on any host" in page  # fleet inventory
    assert not Run.objects.exists() and not Snapshot.objects.exists()
