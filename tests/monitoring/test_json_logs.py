"""LOG_FORMAT=json: a real backup, by the command line and by a real Celery
worker, writes one JSON object per line, and every line logged while the
run is in play carries the run's id, app id and host id (the worker's
also the Celery task id). The plain format shows the same ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from django.conf import settings

from fleet.services import refresh_inventory
from snapshots.models import Run, Snapshot
from snapshots.services.snapshots import start_backup
from tests.conftest import REPO_ROOT, manage_py, subprocess_env
from tests.small_app import deploy_small_app, remove_small_app
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def small_app(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[ComposeStack]:
    stack = deploy_small_app(docker_client, tmp_path, data_mb=4)
    try:
        yield stack
    finally:
        remove_small_app(stack)


def _env(log_format: str) -> dict[str, str]:
    env = subprocess_env()
    # DEBUG: the Docker SDK's requests are logged too, so the run has lines to check.
    env.update(LOG_FORMAT=log_format, LOG_LEVEL="DEBUG")
    return env


def _in_run(entries: list[dict[str, Any]], run: Run) -> list[dict[str, Any]]:
    mine = [e for e in entries if e.get("run_id") == str(run.pk)]
    assert mine, entries[-20:]
    for entry in mine:
        assert entry["app_id"] == run.app_id and entry["host_id"] == run.host_id, entry
        assert {"time", "level", "logger", "message"} <= set(entry), entry
    # No line names another run.
    assert {e["run_id"] for e in entries if "run_id" in e} == {str(run.pk)}
    return mine


@pytest.mark.django_db(transaction=True)
def test_cli_backup_logs_json_lines_with_the_runs_ids(small_app: ComposeStack) -> None:
    process = manage_py("backup", "create", small_app.project, env=_env("json"))
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    lines = err.splitlines()
    assert lines
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    run = Run.objects.get(app_id=small_app.project, operation=Run.Operation.BACKUP)
    assert run.state == Run.State.COMPLETED
    mine = _in_run(entries, run)
    assert any(e["logger"].startswith(("docker", "urllib3")) for e in mine)
    assert run.host_id == settings.BACKUP_HOST_ID


@pytest.mark.django_db(transaction=True)
def test_cli_plain_format_shows_the_ids_too(small_app: ComposeStack) -> None:
    process = manage_py("backup", "create", small_app.project, env=_env("plain"))
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    run = Run.objects.get(app_id=small_app.project, operation=Run.Operation.BACKUP)
    tag = f"[run={run.pk} app={run.app_id} host={run.host_id}] "
    assert any(tag in line for line in err.splitlines()), err[-2000:]


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_worker_logs_json_lines_with_the_run_and_task_ids(
    small_app: ComposeStack, settings: Any, tmp_path: Path
) -> None:
    queue = f"test-json-logs-{os.getpid()}"
    settings.BACKUP_TASK_QUEUE = queue
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backup_project", "--quiet", "worker",
             "-Q", queue, "--pool", "solo", "--loglevel", "DEBUG", "--hostname", f"{queue}@%h"],
            cwd=REPO_ROOT, env=_env("json"), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        refresh_inventory()  # the worker's report of its host, not waited for here
        run = start_backup(small_app.project)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.state in (Run.State.COMPLETED, Run.State.FAILED):
                break
            assert worker.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.5)
        assert run.state == Run.State.COMPLETED, (run.error, log_path.read_text()[-3000:])
        assert Snapshot.objects.get(runs=run).status == Snapshot.Status.COMPLETED
        time.sleep(1)  # the task's last lines (succeeded) after the run's row
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    text = log_path.read_text()
    # Lines that are not JSON are only what Celery and Python print without
    # logging (the root-user SecurityWarning, the shutdown line); no log
    # record in Celery's plain layout.
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert not [line for line in text.splitlines() if line.startswith("[20")], text[-2000:]
    mine = _in_run(entries, run)
    assert all(entry["task_id"] == str(run.pk) for entry in mine)
    # The task's own lines outside the run (none here) would still carry the task id.
    tasks = {e["task_id"] for e in entries if "task_id" in e}
    assert tasks == {str(run.pk)}
