"""The product as a user runs it: `scripts/run.sh` (what `make run` starts:
gunicorn, a Celery worker and beat, as separate processes) driven over real
HTTP with curl's view of the API, on both configurations:

- embedded: nothing configured, so SQLite and the filesystem broker under
  BACKUP_DATA_DIR, exactly the first thing every user runs;
- postgres+redis: DATABASE_URL and CELERY_BROKER_URL set, as in production.

The stack is a MariaDB app with a 13 MB dump of 600-byte rows (its restore
streams through the exec's stdin for seconds) and a files volume. The flow:
create → poll → verify quick and deep → download → restore with ?wait=true →
data equal → delete. Step timings are printed (run with -s to see them)."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import psycopg
import pytest
import requests

from tests.conftest import REPO_ROOT, StackFactory
from tests.engine.treegen import snapshot as tree_snapshot
from tests.realistic_data import load_rows, mariadb_sql, table_digest
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.celery]
API = "/api/v1/backup"
ROWS = 20_000  # x ~600 bytes: a 13 MB dump
FILES_MB = 48
START_TIMEOUT = 120
# The variables this test process got from tests/settings.py, which a user's
# shell would not have: the served product must run on its own defaults.
TEST_ONLY_VARIABLES = (
    "DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY", "BACKUP_DATA_DIR",
    "DJANGO_SETTINGS_MODULE", "BACKUP_ROOT", "BACKUP_SPOOL_DIR", "BACKUP_TASK_QUEUE",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    """A running `scripts/run.sh` and what a user would have at hand."""

    base_url: str
    env: dict[str, str]
    data_dir: Path
    api_key: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def call(self, method: str, path: str, status: int, **kwargs: Any) -> Any:
        response = requests.request(
            method, f"{self.base_url}{API}{path}", headers={"X-API-Key": self.api_key},
            timeout=300, **kwargs,
        )  # fmt: skip
        body = response.json()
        assert response.status_code == status, body
        assert set(body) == {"code", "message", "data"} and body["code"] == status, body
        return body["data"]

    def wait_for_task(self, task_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            task = self.call("GET", f"/tasks/{task_id}", 200)
            if task["state"] in ("completed", "failed"):
                return task
            time.sleep(0.3)
        raise AssertionError(f"task {task_id} did not end in {timeout}s: {task}")

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [str(REPO_ROOT / ".venv/bin/python"), "manage.py", *args], cwd=REPO_ROOT,
            env=self.env, capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    def worker_log(self) -> str:
        path = self.data_dir / "log" / "worker.log"
        return path.read_text(errors="replace") if path.exists() else ""


def user_environment(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TEST_ONLY_VARIABLES}
    return env | {
        "BACKUP_DATA_DIR": str(data_dir),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        # A host of its own: the worker's queue is host.<id>, no other test's.
        "BACKUP_HOST_ID": f"e2e-{secrets.token_hex(4)}",
        "DJANGO_ADMIN_PASSWORD": secrets.token_urlsafe(16),
    }


@pytest.fixture
def postgres_database() -> Iterator[str]:
    name = f"e2e_{secrets.token_hex(4)}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["embedded", "postgres+redis"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    data_dir = tmp_path / "var"
    env = user_environment(data_dir, port)
    if request.param == "postgres+redis":
        env["DATABASE_URL"] = request.getfixturevalue("postgres_database")
        # A Redis database no other test's worker reads from.
        env["CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/11"
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [str(REPO_ROOT / "scripts/run.sh")], cwd=REPO_ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    instance = Served(f"http://127.0.0.1:{port}", env, data_dir)
    try:
        _wait_until_healthy(instance, process, tmp_path / "run.log")
        instance.api_key = instance.manage("apikey", "create", "e2e", "--scope", "admin")
        yield instance
    finally:
        # Ctrl-C as a user would: run.sh stops gunicorn, the worker and beat.
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log.close()
        print(f"\n[{request.param}] step timings (s): {instance.timings}")


def _wait_until_healthy(served: Served, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"run.sh exited {process.returncode}:\n{log.read_text()}")
        try:
            response = requests.get(f"{served.base_url}/api/v1/health", timeout=5)
            # The worker answers the health check's broker ping once it is up.
            if response.status_code == 200 and "ready" in served.worker_log():
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not up yet, or a slow first answer on a loaded machine: ask again
        time.sleep(0.5)
    raise AssertionError(f"not healthy in {START_TIMEOUT}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def realistic_wordpress(deploy_stack: StackFactory, docker_client: docker.DockerClient) -> Any:
    stack = deploy_stack("wordpress")
    load_rows(stack, "notes", rows=ROWS, row_bytes=600)
    root = Path(docker_client.volumes.get(stack.volume("wordpress")).attrs["Mountpoint"])
    uploads = root / "wp-content" / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    for i in range(FILES_MB * 4):  # 256 KiB files, as media uploads would be
        (uploads / f"photo-{i:04d}.jpg").write_bytes(os.urandom(256 << 10))
    return stack


def timed(served: Served, step: str, started: float) -> None:
    served.timings[step] = round(time.monotonic() - started, 2)


def test_served_backup_verify_download_restore_delete(
    served: Served, realistic_wordpress: ComposeStack, docker_client: docker.DockerClient
) -> None:
    stack = realistic_wordpress
    app_id = stack.project
    files_volume = Path(docker_client.volumes.get(stack.volume("wordpress")).attrs["Mountpoint"])
    rows_before = table_digest(stack, "notes")
    files_before = tree_snapshot(files_volume)

    # The worker reported its host before the stack was deployed: ask it for
    # a new inventory, as an operator would, until the app is listed.
    host_id = served.env["BACKUP_HOST_ID"]
    served.call("POST", f"/hosts/{host_id}/refresh", 202)
    deadline = time.monotonic() + 60
    while app_id not in [app["app_id"] for app in served.call("GET", "/apps", 200)["apps"]]:
        assert time.monotonic() < deadline, served.worker_log()[-3000:]
        time.sleep(0.3)

    started = time.monotonic()
    accepted = served.call("POST", "/snapshots", 202, json={"app_id": app_id})
    task = served.wait_for_task(accepted["task_id"])
    assert task["state"] == "completed", (task, served.worker_log()[-3000:])
    timed(served, "backup", started)
    backup_id = accepted["backup_id"]
    snapshot = served.call("GET", f"/snapshots/{backup_id}", 200)
    assert snapshot["status"] == "completed" and snapshot["size_bytes"] > FILES_MB << 20

    started = time.monotonic()
    quick = served.call("POST", f"/snapshots/{backup_id}/verify", 200, json={})
    assert quick["valid"] and quick["snapshot_id"] == backup_id
    timed(served, "verify quick", started)
    started = time.monotonic()
    deep = served.call("POST", f"/snapshots/{backup_id}/verify", 202, json={"deep": True})
    deep_task = served.wait_for_task(deep["task_id"])
    assert deep_task["state"] == "completed" and deep_task["result"]["valid"], deep_task
    assert deep_task["result"]["contains"]["databases"] >= 1
    timed(served, "verify deep", started)

    started = time.monotonic()
    digest = hashlib.sha256()
    with requests.get(
        f"{served.base_url}{API}/snapshots/{backup_id}/download",
        headers={"X-API-Key": served.api_key}, stream=True, timeout=300,
    ) as response:  # fmt: skip
        assert response.status_code == 200
        for chunk in response.iter_content(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == snapshot["sha256"]
    timed(served, "download", started)

    # Change the app, then restore it, waiting for the result.
    mariadb_sql(stack, "UPDATE notes SET body = 'changed' WHERE id <= 10000")
    stack.exec(
        "wordpress", ["sh", "-c", "rm -r /var/www/html/wp-content; echo x > /var/www/html/new"]
    )
    started = time.monotonic()
    restored = served.call("POST", f"/restore/{app_id}/{backup_id}?wait=true", 200, json={})
    assert restored["state"] == "completed", (restored, served.worker_log()[-3000:])
    timed(served, "restore (wait=true)", started)
    result = restored["result"]
    assert result["app_id"] == app_id and result["snapshot_id"] == backup_id
    assert isinstance(result["restored_volumes"], int) and result["restored_volumes"] >= 1
    assert result["database_restored"] is True
    assert table_digest(stack, "notes") == rows_before
    assert tree_snapshot(files_volume) == files_before

    started = time.monotonic()
    deleted = served.call("DELETE", f"/snapshots/{backup_id}", 200)
    assert deleted["freed_bytes"] >= snapshot["size_bytes"]
    served.call("GET", f"/snapshots/{backup_id}", 404)
    timed(served, "delete", started)
    # The embedded broker keeps all its state under BACKUP_DATA_DIR, none in the checkout.
    assert not (REPO_ROOT / "control").exists()
    # Nothing in the worker's log says a report failed or a thread died.
    log = served.worker_log()
    for sign_of_trouble in ("progress reporting failed", "Traceback", "IntegrityError"):
        assert sign_of_trouble not in log, log[-3000:]
