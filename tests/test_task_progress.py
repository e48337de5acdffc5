"""Progress of a running backup reaches the Celery task state, not only the
run row: a real worker, a real app with a few hundred MB in a volume, and the
task's state polled through the result backend while the worker works."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from backup_project.celery import app as celery_app
from fleet.services import refresh_inventory
from snapshots.models import Run
from snapshots.services.snapshots import start_backup
from tests.images import APP_IMAGE
from tests.stacks import ComposeStack, ServiceSpec, random_project

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.celery,
    pytest.mark.django_db(transaction=True),
]
DATA_MB = 800  # enough for the backup to take a few seconds: several progress reports


@pytest.fixture
def big_app(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[ComposeStack]:
    project = random_project("progress")
    stack = ComposeStack(
        docker_client, project, tmp_path / project,
        [ServiceSpec("web", APP_IMAGE, {}, {"data": "/data"}, ["sleep", "2147483647"])],
    )  # fmt: skip
    try:
        stack.up()
        root = Path(docker_client.volumes.get(stack.volume("data")).attrs["Mountpoint"])
        for i in range(DATA_MB // 8):
            (root / f"blob{i}.bin").write_bytes(os.urandom(8 << 20))
        yield stack
    finally:
        stack.remove()


@pytest.fixture
def worker(settings: Any, tmp_path: Path, celery_queue: str, request: pytest.FixtureRequest) -> Any:
    settings.BACKUP_ROOT = str(tmp_path / "backups")
    settings.BACKUP_TASK_QUEUE = celery_queue
    return request.getfixturevalue("celery_worker")


def test_backup_progress_shows_in_the_task_state(big_app: ComposeStack, worker: Any) -> None:
    refresh_inventory()  # the host's inventory (the worker's timer may not have seen the app)
    run = start_backup(big_app.project)
    result = celery_app.AsyncResult(str(run.pk))
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        # One read of state and meta together (result.state then result.info
        # would be two reads, and the state may change between them).
        meta = result.backend.get_task_meta(result.id, cache=False)
        if meta["status"] in ("SUCCESS", "FAILURE"):
            break
        if meta["status"] == "PROGRESS":
            seen.append(dict(meta["result"]))
        time.sleep(0.02)
    assert meta["status"] == "SUCCESS", meta
    assert meta["result"]["status"] == "completed"
    archiving = [p for p in seen if p["phase"] == "archiving"]
    assert archiving, f"no archiving progress seen in the task state: {seen}"
    total = DATA_MB << 20
    for progress in archiving:
        assert 0 <= progress["bytes_done"] <= progress["bytes_total"]
        assert progress["bytes_total"] >= total  # the volume's measured size
    assert any(p["bytes_done"] > 0 for p in archiving), archiving  # it moves
    # The run row got the same engine progress, and ends on its final phase.
    run.refresh_from_db()
    assert run.state == Run.State.COMPLETED
    assert run.bytes_done >= total
