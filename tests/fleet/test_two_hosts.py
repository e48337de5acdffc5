"""Two real Docker hosts on one machine: the machine's engine (host A) and a
second dockerd (host B, tests/fleet/two_engines.py), a real worker process
for each (its own BACKUP_HOST_ID and DOCKER_HOST, consuming only its host's
queue), Redis and PostgreSQL. The web process is this test's (the API
through Django's test client) with DOCKER_HOST pointing at no engine: it
works from the stored inventory only.

Checked: each host's apps appear; a backup of an app on B runs on B's worker
(the run's worker is that process); the same app id on both hosts needs
host_id; kill -9 of B's worker during a backup leaves A working, B is
offline (new work refused at once), and B's run is failed once its lease
expired, its app's lock released."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from rest_framework.test import APIClient

from fleet.models import HostApp
from snapshots import tasks
from snapshots.locks import app_is_locked
from snapshots.models import Run
from tests.api.conftest import API, envelope
from tests.conftest import REPO_ROOT, _wait_for_worker, subprocess_env
from tests.fleet.two_engines import Engine, second_engine, wait_for
from tests.images import APP_IMAGE
from tests.stacks import ComposeStack, ServiceSpec, random_project

pytestmark = [
    pytest.mark.django_db(transaction=True), pytest.mark.docker, pytest.mark.celery,
    pytest.mark.slow,
]  # fmt: skip

LEASE = 6  # seconds: B's dead run is failed this long after its last heartbeat


def _stack(client: docker.DockerClient, project: str, tmp: Path, megabytes: int) -> ComposeStack:
    command = [
        "sh", "-c",
        f"head -c {megabytes << 20} /dev/urandom > /data/blob; exec sleep 2147483647",
    ]  # fmt: skip
    stack = ComposeStack(
        client, project, tmp / f"{project}-{uuid.uuid4().hex[:4]}",
        [ServiceSpec("web", APP_IMAGE, {}, {"data": "/data"}, command)],
    )  # fmt: skip
    stack.up()
    return stack


class Worker:
    def __init__(
        self, host_id: str, docker_host: str, log: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        env = subprocess_env() | (extra_env or {}) | {
            "BACKUP_HOST_ID": host_id, "DOCKER_HOST": docker_host,
            "BACKUP_HEARTBEAT_SECONDS": "1", "BACKUP_HOST_OFFLINE_SECONDS": "4",
            "BACKUP_LEASE_SECONDS": str(LEASE), "BACKUP_INVENTORY_INTERVAL_SECONDS": "2",
        }  # fmt: skip
        self.host_id = host_id
        self.log = log
        node = f"{host_id}@two-hosts"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "backup_project", "worker",
                 "-Q", f"host.{host_id}", "--pool", "solo", "--loglevel", "INFO",
                 "--hostname", node],
                cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        _wait_for_worker(host_id, self.process, log, node=node)

    @property
    def name(self) -> str:  # what a run's `worker` says (hostname:pid)
        return f"{socket.gethostname()}:{self.process.pid}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def engine_b(docker_client: docker.DockerClient) -> Iterator[Engine]:
    with second_engine(docker_client, [APP_IMAGE]) as engine:
        yield engine


def _backup(api: APIClient, app_id: str, host_id: str | None = None) -> Run:
    body: dict[str, Any] = {"app_id": app_id, "encrypt": False}
    if host_id:
        body["host_id"] = host_id
    return Run.objects.get(
        pk=envelope(api.post(f"{API}/snapshots", body, format="json"), 202)["task_id"]
    )


def _ended(run: Run) -> Run | None:
    run.refresh_from_db()
    return run if run.state in (Run.State.COMPLETED, Run.State.FAILED) else None


def test_two_real_hosts_behind_one_api(
    api: APIClient, docker_client: docker.DockerClient, engine_b: Engine, tmp_path: Path,
    settings: Any,
) -> None:  # fmt: skip
    engine_a = settings.DOCKER_HOST  # the machine's engine, for A's worker
    # The web process: no engine at all.
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    settings.BACKUP_TASK_QUEUE = ""  # routed by host
    settings.BACKUP_HOST_OFFLINE_SECONDS = 4
    settings.BACKUP_LEASE_SECONDS = LEASE
    host_a, host_b = f"two-a-{uuid.uuid4().hex[:6]}", f"two-b-{uuid.uuid4().hex[:6]}"
    same, only_b = random_project("same"), random_project("onlyb")
    stacks = []
    workers: list[Worker] = []
    try:
        stacks += [
            _stack(docker_client, same, tmp_path, 1),
            _stack(engine_b.client, same, tmp_path, 1),
            _stack(engine_b.client, only_b, tmp_path, 400),
        ]
        worker_a = Worker(host_a, engine_a, tmp_path / "a.log")
        worker_b = Worker(host_b, engine_b.url, tmp_path / "b.log")
        workers += [worker_a, worker_b]

        # Each host's apps appear, from each worker's own report.
        wait_for("both inventories", lambda: HostApp.objects.filter(app_id=same).count() == 2)
        listed = envelope(api.get(f"{API}/apps", {"host_id": host_b}), 200)["apps"]
        assert {app["app_id"] for app in listed} >= {same, only_b}
        assert all(app["host_id"] == host_b and app["host_online"] for app in listed)
        on_a = envelope(api.get(f"{API}/apps", {"host_id": host_a}), 200)["apps"]
        assert same in {a["app_id"] for a in on_a} and only_b not in {a["app_id"] for a in on_a}

        # The same app id on both hosts needs host_id.
        response = api.post(f"{API}/snapshots", {"app_id": same}, format="json")
        assert envelope(response, 409) == {"hosts": sorted([host_a, host_b])}

        # A backup of an app on B runs on B's worker.
        run = _backup(api, same, host_b)
        run = wait_for("backup on B", lambda: _ended(run), 120)
        assert run.state == Run.State.COMPLETED, (run.error, worker_b.log.read_text()[-3000:])
        assert run.host_id == host_b and run.worker == worker_b.name

        # kill -9 of B's worker during a backup of its big app.
        big = _backup(api, only_b)
        wait_for(
            "B's backup running",
            lambda: Run.objects.filter(pk=big.pk, state=Run.State.RUNNING).exists(),
        )
        worker_b.process.send_signal(signal.SIGKILL)
        worker_b.process.wait(timeout=10)

        # A keeps working.
        on_a_run = _backup(api, same, host_a)
        on_a_run = wait_for("backup on A", lambda: _ended(on_a_run), 120)
        assert on_a_run.state == Run.State.COMPLETED, worker_a.log.read_text()[-3000:]
        assert on_a_run.worker == worker_a.name

        # B goes offline: new work for it is refused at once, nothing queued.
        wait_for("B offline", lambda: not _host(api, host_b)["online"], 30)
        response = api.post(f"{API}/snapshots", {"app_id": only_b}, format="json")
        envelope(response, 503)
        assert f"host {host_b} is offline" in response.json()["message"]

        # Beat's recovery round fails B's run once its lease expired; the lock goes.
        assert app_is_locked(only_b, host_b)

        def failed() -> bool:
            tasks.recover_hosts_task()
            big.refresh_from_db()
            return big.state == Run.State.FAILED

        wait_for("B's run failed", failed, 60)
        assert f"host {host_b} is offline" in big.error
        assert not app_is_locked(only_b, host_b)
    finally:
        for worker in workers:
            worker.stop()
        for stack in stacks:
            stack.remove()


def _host(api: APIClient, host_id: str) -> dict[str, Any]:
    hosts = envelope(api.get(f"{API}/hosts"), 200)["hosts"]
    return next(host for host in hosts if host["host_id"] == host_id)
