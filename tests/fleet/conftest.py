"""Fixtures for the fleet tests: a tiny Compose-like app on the real engine,
and a real worker process serving its own host's queue."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.api.conftest import api, api_key, make_snapshot  # noqa: F401 - API fixtures
from tests.conftest import REPO_ROOT, _wait_for_worker, subprocess_env
from tests.images import APP_IMAGE
from tests.stacks import ComposeStack, ServiceSpec, random_project


@pytest.fixture
def tiny_app(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[ComposeStack]:
    project = random_project("fleet")
    command = ["sh", "-c", "head -c 50000 /dev/zero > /data/blob; exec sleep 2147483647"]
    stack = ComposeStack(
        docker_client, project, tmp_path / project,
        [ServiceSpec("web", APP_IMAGE, {"GREETING": "hi"}, {"data": "/data"}, command)],
    )  # fmt: skip
    try:
        stack.up()
        yield stack
    finally:
        stack.remove()


@dataclass
class FleetWorker:
    host_id: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def fleet_worker(transactional_db: None, tmp_path: Path) -> Iterator[FleetWorker]:
    """A real `celery worker` with its own BACKUP_HOST_ID, consuming only
    host.<id> (so no other test's messages reach it), heartbeating every second."""
    host_id = f"fleet-{uuid.uuid4().hex[:8]}"
    env = subprocess_env()
    env.update(
        BACKUP_HOST_ID=host_id, BACKUP_HEARTBEAT_SECONDS="1", BACKUP_HOST_OFFLINE_SECONDS="5",
        BACKUP_INVENTORY_INTERVAL_SECONDS="3600",
    )  # fmt: skip
    log_path = tmp_path / "fleet-worker.log"
    node = f"{host_id}@fleet"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backup_project", "worker",
             "-Q", f"host.{host_id}", "--pool", "solo", "--loglevel", "INFO",
             "--hostname", node],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_worker(host_id, proc, log_path, node=node)
        yield FleetWorker(host_id, proc, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
