"""Shared by the incremental tests on real stacks: where backups, the spool
and the index go, a small app, and a backup asked to be incremental.
Import the fixtures by name into a test module to use them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from snapshots.models import Snapshot
from tests.backup_helpers import backup_now
from tests.small_app import deploy_small_app, remove_small_app
from tests.stacks import ComposeStack


@pytest.fixture(autouse=True)
def incremental_dirs(settings, tmp_path: Path) -> None:
    """This test's own backups, spool and index; no encryption unless it sets it."""
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    settings.BACKUP_INDEX_DIR = tmp_path / "index"
    settings.BACKUP_AGE_RECIPIENTS = []
    settings.BACKUP_PASSPHRASE = ""


def small_app_fixture(data_mb: int):
    """A fixture deploying tests.small_app with DATA_MB MiB of random data."""

    @pytest.fixture
    def app(docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[ComposeStack]:
        stack = deploy_small_app(docker_client, tmp_path, data_mb=data_mb)
        yield stack
        remove_small_app(stack)

    return app


def incremental(app: ComposeStack) -> Snapshot:
    """`backup create APP --incremental`, which must complete."""
    snapshot = backup_now(app.project, "--incremental")
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    return snapshot
