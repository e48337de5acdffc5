"""`manage.py backup ...` refusals are one clear line on stderr and a
non-zero exit, never a traceback; a refused create leaves no Snapshot or Run
row behind (issue 19, point 9). Each command runs as a real subprocess on
the test database."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from snapshots.models import Run, Snapshot
from snapshots.services.api_keys import create_api_key
from tests.api.conftest import API, envelope
from tests.conftest import manage_py, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)
SUFFIX = {"pending": "a00001", "running": "a00002", "failed": "a00003"}  # backup ids are hex


def _run(*args: str, **env: str) -> tuple[int, str, str]:
    environment = subprocess_env()
    for name in ("BACKUP_AGE_RECIPIENTS", "BACKUP_PASSPHRASE", "BACKUP_AGE_IDENTITY_FILE"):
        environment.pop(name, None)
        environment.pop(f"{name}_FILE", None)
    environment.update(env)
    proc = manage_py("backup", *args, env=environment)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def _one_clear_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_create_to_an_unknown_storage_location() -> None:
    code, _, err = _run("create", "wordpress001", "--storage", "nowhere")
    assert code != 0
    line = _one_clear_line(err)
    assert "nowhere" in line and "storage" in line
    assert not Snapshot.objects.exists() and not Run.objects.exists()


def test_create_encrypted_without_a_key() -> None:
    code, _, err = _run("create", "wordpress001", "--encrypt")
    assert code != 0
    line = _one_clear_line(err)
    assert "BACKUP_AGE_RECIPIENTS" in line and "BACKUP_PASSPHRASE" in line
    assert not Snapshot.objects.exists() and not Run.objects.exists()


@pytest.mark.parametrize("app_id", ["Not A Project!", "../etc", "WordPress"])
def test_create_for_an_invalid_app_id_creates_no_row(app_id: str) -> None:
    code, _, err = _run("create", app_id)
    assert code != 0
    assert "not a valid app id" in _one_clear_line(err)
    assert not Snapshot.objects.exists() and not Run.objects.exists()


@pytest.mark.docker
def test_create_for_an_unknown_app_creates_no_row() -> None:
    """Asked of the real Docker engine: nothing carries the project's label."""
    code, _, err = _run("create", "no-such-app-4f2a9c")
    assert code != 0
    assert "no app 'no-such-app-4f2a9c'" in _one_clear_line(err)
    assert not Snapshot.objects.exists() and not Run.objects.exists()


@pytest.mark.parametrize("status", ["pending", "running", "failed"])
def test_verify_of_a_snapshot_that_is_not_completed(status: str) -> None:
    snapshot = Snapshot.objects.create(
        backup_id=f"backup_20260105_103000_{SUFFIX[status]}", app_id="wp", host_id="h",
        status=status, error="boom" if status == "failed" else "",
    )  # fmt: skip
    code, _, err = _run("verify", snapshot.backup_id, "--deep")
    assert code != 0
    line = _one_clear_line(err)
    assert f"snapshot {snapshot.backup_id} is {status}" in line
    assert not Run.objects.exists()


def test_verify_of_an_unknown_snapshot() -> None:
    code, _, err = _run("verify", "backup_20260105_103000_000000")
    assert code != 0
    assert "no snapshot" in _one_clear_line(err)


# -- the same refusals through the API (Django's test client) ------------------


@pytest.mark.parametrize("app_id", ["Not A Project!", "../etc"])
def test_api_create_for_an_invalid_app_id_creates_no_row(app_id: str) -> None:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=create_api_key("tests")[1])
    response = client.post(f"{API}/snapshots", {"app_id": app_id}, format="json")
    assert response.status_code in (400, 404)
    envelope(response, response.status_code)
    assert "app" in response.json()["message"]
    assert not Snapshot.objects.exists() and not Run.objects.exists()


@pytest.mark.docker
def test_api_create_for_an_unknown_app_creates_no_row() -> None:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=create_api_key("tests")[1])
    response = client.post(f"{API}/snapshots", {"app_id": "no-such-app-4f2a9c"}, format="json")
    envelope(response, 404)
    assert "no app 'no-such-app-4f2a9c'" in response.json()["message"]
    assert not Snapshot.objects.exists() and not Run.objects.exists()


@pytest.mark.parametrize("status", ["pending", "running", "failed"])
def test_api_verify_of_a_snapshot_that_is_not_completed_is_a_409(status: str) -> None:
    snapshot = Snapshot.objects.create(
        backup_id=f"backup_20260105_103000_{SUFFIX[status]}",
        app_id="wp",
        host_id="h",
        status=status,
    )
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=create_api_key("tests")[1])
    for deep in (False, True):
        url = f"{API}/snapshots/{snapshot.backup_id}/verify"
        response = client.post(url, {"deep": deep}, format="json")
        envelope(response, 409)
        assert f"is {status}" in response.json()["message"]
    assert not Run.objects.exists()
