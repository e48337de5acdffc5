"""docker-compose.yml is valid (checked by Debian's docker-compose) and has
the production shape. It cannot be brought up here: no image can be pulled."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def rendered(tmp_path: Path) -> dict:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose missing: scripts/ensure_docker.sh installs it")
    shutil.copy(REPO_ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(REPO_ROOT / ".env.example", tmp_path / ".env")
    result = subprocess.run(
        ["docker-compose", "--project-directory", str(tmp_path), "-f",
         str(tmp_path / "docker-compose.yml"), "config"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_config_is_valid_and_complete(rendered: dict) -> None:
    services = rendered["services"]
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(services)
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    assert services["beat"]["deploy"]["replicas"] == 1


def test_worker_runs_on_the_docker_host_on_its_queue(rendered: dict) -> None:
    worker = rendered["services"]["worker"]
    # docker-compose v1 renders short "source:target[:mode]" strings.
    mounts = set(worker["volumes"])
    assert "/var/run/docker.sock:/var/run/docker.sock:rw" in mounts
    assert "/var/lib/docker/volumes:/var/lib/docker/volumes:rw" in mounts
    command = worker["command"]
    assert command[command.index("-Q") + 1] == "default,host.docker-host-1"


def test_production_uses_postgres_and_redis(rendered: dict) -> None:
    env = rendered["services"]["web"]["environment"]
    assert env["DATABASE_URL"].startswith("postgres://backup:")
    assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"


def test_worker_has_time_to_roll_back_when_stopped(rendered: dict) -> None:
    """docker stop's SIGTERM makes the worker end a restore by rolling it
    back; the default 10 s before SIGKILL is too short for that."""
    grace = rendered["services"]["worker"]["stop_grace_period"]
    units = {"s": 1, "m": 60, "h": 3600}
    seconds = sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", str(grace)))
    assert seconds >= 120, grace


def test_web_and_beat_have_no_docker_socket(rendered: dict) -> None:
    for name in ("web", "beat"):
        mounts = " ".join(rendered["services"][name].get("volumes", []))
        assert "docker.sock" not in mounts and "/var/lib/docker" not in mounts, name


def test_another_host_runs_only_a_worker_on_the_shared_database_and_broker(
    tmp_path: Path,
) -> None:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose missing: scripts/ensure_docker.sh installs it")
    shutil.copy(REPO_ROOT / "docker-compose.worker.yml", tmp_path / "docker-compose.worker.yml")
    shutil.copy(REPO_ROOT / ".env.example", tmp_path / ".env")
    command = ["docker-compose", "--project-directory", str(tmp_path), "-f",
               str(tmp_path / "docker-compose.worker.yml"), "config"]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "BACKUP_HOST_ID": "docker-host-2", "FLEET_SERVER": "10.0.0.1"}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {"worker"}
    worker = services["worker"]
    assert worker["command"][worker["command"].index("-Q") + 1] == "default,host.docker-host-2"
    assert worker["environment"]["BACKUP_HOST_ID"] == "docker-host-2"
    assert worker["environment"]["DATABASE_URL"].endswith("@10.0.0.1:5432/backup")
    assert worker["environment"]["CELERY_BROKER_URL"] == "redis://10.0.0.1:6379/0"
    assert "/var/run/docker.sock:/var/run/docker.sock:rw" in set(worker["volumes"])
    # Without FLEET_SERVER it refuses to render rather than point at nothing.
    env.pop("FLEET_SERVER")
    refused = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    assert refused.returncode != 0 and "FLEET_SERVER" in refused.stderr


def test_web_and_beat_are_on_the_workers_host(rendered: dict) -> None:
    """They share its disk (backup_data): a local snapshot of this host is
    theirs to download or delete; one of another host is refused, never
    dropped as gone (snapshots.services.snapshots)."""
    services = rendered["services"]
    host = services["worker"]["environment"]["BACKUP_HOST_ID"]
    assert host == "docker-host-1"
    for name in ("web", "beat"):
        assert services[name]["environment"]["BACKUP_HOST_ID"] == host, name
        assert "backup_data:/data:rw" in set(services[name]["volumes"]), name
