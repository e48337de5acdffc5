"""GET apps, GET apps/<app_id> and POST snapshots on a real Docker engine (a
one-container Compose-like app from the local test image). The web process
reads the hosts' stored inventory: each test has the worker's refresh
(fleet.services.refresh_inventory) run first, for real against the engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from rest_framework.test import APIClient

from fleet.services import refresh_inventory
from fleet.volume_sizes import measure_due_sizes
from snapshots.models import Run, Snapshot
from snapshots.services import snapshots as snapshot_services
from tests.api.conftest import API, MakeSnapshot, envelope
from tests.fleet.helpers import age_host
from tests.images import APP_IMAGE
from tests.stacks import ComposeStack, ServiceSpec, random_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiny_app(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[ComposeStack]:
    project = random_project("apitest")
    command = ["sh", "-c", "echo hello > /data/hello.txt; exec sleep 2147483647"]
    stack = ComposeStack(
        docker_client, project, tmp_path / project,
        [ServiceSpec("web", APP_IMAGE, {"GREETING": "hi"}, {"data": "/data"}, command)],
    )  # fmt: skip
    try:
        stack.up()
        refresh_inventory()
        yield stack
    finally:
        stack.remove()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    calls: list[dict] = []
    monkeypatch.setattr(
        snapshot_services.celery_app, "send_task", lambda name, **kw: calls.append({name: kw})
    )
    return calls


@pytest.mark.docker
def test_list_shows_host_apps_and_apps_known_only_from_snapshots(
    api: APIClient, tiny_app: ComposeStack, make_snapshot: MakeSnapshot, settings
) -> None:
    # Made by this host's worker: an app's backups are those its host made.
    make_snapshot(app_id=tiny_app.project, size_bytes=10, host_id=settings.BACKUP_HOST_ID)
    make_snapshot(app_id="uninstalled_app", size_bytes=30)
    data = envelope(api.get(f"{API}/apps"), 200)
    apps = {app["app_id"]: app for app in data["apps"]}
    assert data["total"] == len(data["apps"])
    app = apps[tiny_app.project]
    assert app["present"] and app["backups"]["snapshots"] == 1
    assert [c["service"] for c in app["containers"]] == ["web"]
    assert app["containers"][0]["state"] == "running" and app["containers"][0]["image"]
    assert [v["name"] for v in app["volumes"]] == [tiny_app.volume("data")]
    assert {f["name"] for f in app["config_files"]} == {"docker-compose.yml", ".env"}
    gone = apps["uninstalled_app"]
    assert not gone["present"] and gone["containers"] == [] and gone["backups"]["size_bytes"] == 30


@pytest.mark.docker
def test_detail_with_volume_sizes_and_inventory_age(
    api: APIClient, tiny_app: ComposeStack, settings
) -> None:
    # Sizes are measured by the worker apart from the refresh (its inventory
    # thread, here called directly); ?sizes is still accepted.
    measure_due_sizes(max_age_seconds=0)
    data = envelope(api.get(f"{API}/apps/{tiny_app.project}"), 200)
    assert data["app_id"] == tiny_app.project and data["volumes"][0]["size_bytes"] > 0
    assert data["host_id"] == settings.BACKUP_HOST_ID and data["host_online"] is True
    assert data["inventory_stale"] is False and 0 <= data["inventory_age_seconds"] < 60
    envelope(api.get(f"{API}/apps/{tiny_app.project}", {"sizes": "true"}), 200)
    envelope(api.get(f"{API}/apps/{tiny_app.project}", {"sizes": "perhaps"}), 400)


@pytest.mark.docker
def test_stale_inventory_is_shown_with_its_age(
    api: APIClient, tiny_app: ComposeStack, settings
) -> None:
    settings.BACKUP_INVENTORY_STALE_SECONDS = 100
    age_host(settings.BACKUP_HOST_ID, inventory_seconds=500)
    data = envelope(api.get(f"{API}/apps/{tiny_app.project}"), 200)
    assert data["inventory_stale"] is True and 500 <= data["inventory_age_seconds"] < 560


@pytest.mark.docker
def test_an_app_on_two_hosts_needs_host_id(
    api: APIClient, tiny_app: ComposeStack, settings
) -> None:
    """A second worker (another BACKUP_HOST_ID) reporting the same engine:
    the app id is then on two hosts."""
    here = settings.BACKUP_HOST_ID
    settings.BACKUP_HOST_ID = "second-host"
    refresh_inventory()
    settings.BACKUP_HOST_ID = here
    response = api.get(f"{API}/apps/{tiny_app.project}")
    data = envelope(response, 409)
    assert data == {"hosts": sorted([here, "second-host"])}
    assert "say which with host_id" in response.json()["message"]
    one = envelope(api.get(f"{API}/apps/{tiny_app.project}", {"host_id": "second-host"}), 200)
    assert one["host_id"] == "second-host" and one["present"]
    listed = envelope(api.get(f"{API}/apps"), 200)["apps"]
    mine = [app["host_id"] for app in listed if app["app_id"] == tiny_app.project]
    assert sorted(mine) == sorted([here, "second-host"])
    only = envelope(api.get(f"{API}/apps", {"host_id": "second-host"}), 200)["apps"]
    assert {app["host_id"] for app in only} == {"second-host"}
    envelope(api.get(f"{API}/apps/{tiny_app.project}", {"host_id": "nowhere"}), 404)


@pytest.mark.docker
@pytest.mark.parametrize("app_id", ["no_such_app_x1", "Bad%20App", "-x", "a" * 300])
def test_unknown_or_invalid_app_is_404(api: APIClient, app_id: str) -> None:
    envelope(api.get(f"{API}/apps/{app_id}"), 404)


@pytest.mark.docker
def test_an_uninstalled_app_with_snapshots_is_still_shown(
    api: APIClient, make_snapshot: MakeSnapshot
) -> None:
    make_snapshot(app_id="uninstalled_app")
    data = envelope(api.get(f"{API}/apps/uninstalled_app"), 200)
    assert data["present"] is False and data["backups"]["snapshots"] == 1


@pytest.mark.docker
def test_create_backup_queues_a_task(
    api: APIClient, tiny_app: ComposeStack, sent: list, settings,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    settings.BACKUP_TASK_QUEUE = "api-test"
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"{API}/snapshots", {"app_id": tiny_app.project, "encrypt": False}, format="json"
        )
    data = envelope(response, 202)
    run = Run.objects.get(pk=data["task_id"])
    snapshot = Snapshot.objects.get(backup_id=data["backup_id"])
    assert run.snapshot == snapshot and run.operation == "backup" and data["state"] == "pending"
    assert snapshot.status == "pending" and snapshot.app_id == tiny_app.project
    task_id = data["task_id"]
    assert sent == [
        {"snapshots.create_backup": {"args": [task_id], "task_id": task_id, "queue": "api-test"}}
    ]


@pytest.mark.docker
def test_create_backup_takes_the_incremental_type(
    api: APIClient, tiny_app: ComposeStack, sent: list, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"{API}/snapshots", {"app_id": tiny_app.project, "encrypt": False,
                                 "backup_type": "incremental"}, format="json",
        )  # fmt: skip
    data = envelope(response, 202)
    run = Run.objects.get(pk=data["task_id"])
    # Asked for; the run decides under the app's lock whether it can be one.
    assert run.options["backup_type"] == "incremental" and len(sent) == 1


@pytest.mark.docker
@pytest.mark.parametrize(
    ("body", "status", "field", "text"),
    [
        ({"backup_type": "differential"}, 400, "backup_type", 'use "full" or "incremental"'),
        ({"storage_location": "s3-nowhere"}, 400, "storage_location", "unknown storage"),
        ({"encrypt": "yes please"}, 400, "encrypt", "valid boolean"),
        ({"app_id": None}, 400, "app_id", "null"),
        ({"app_id": "../../etc"}, 400, "app_id", "not a valid app id"),
        ({"app_id": "no_such_app_x1"}, 404, None, "no app 'no_such_app_x1'"),
        ({"encrypt": True}, 400, None, "encryption was requested"),
    ],
)
def test_create_backup_refuses_bad_input_and_changes_nothing(
    api: APIClient, tiny_app: ComposeStack, sent: list, body: dict, status: int,
    field: str | None, text: str,
) -> None:  # fmt: skip
    response = api.post(f"{API}/snapshots", {"app_id": tiny_app.project, **body}, format="json")
    data = envelope(response, status)
    if field:
        assert field in data
    assert text in response.json()["message"]
    assert not Snapshot.objects.exists() and not Run.objects.exists() and not sent


@pytest.mark.docker
def test_listing_and_backing_up_need_no_docker_engine(
    api: APIClient, tiny_app: ComposeStack, sent: list, settings,
    django_capture_on_commit_callbacks,
) -> None:  # fmt: skip
    """The web process reads the inventory and sends to the app's host's
    queue: it works with no engine at all."""
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    settings.BACKUP_TASK_QUEUE = ""
    apps = envelope(api.get(f"{API}/apps"), 200)["apps"]
    assert tiny_app.project in {app["app_id"] for app in apps}
    envelope(api.get(f"{API}/apps/{tiny_app.project}"), 200)
    with django_capture_on_commit_callbacks(execute=True):
        body = {"app_id": tiny_app.project, "encrypt": False}
        data = envelope(api.post(f"{API}/snapshots", body, format="json"), 202)
    assert sent[0]["snapshots.create_backup"]["queue"] == f"host.{settings.BACKUP_HOST_ID}"
    assert Run.objects.get(pk=data["task_id"]).host_id == settings.BACKUP_HOST_ID
