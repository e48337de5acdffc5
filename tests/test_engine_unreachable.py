"""The Docker engine becomes unreachable in the middle of a pause-mode
backup and of a restore (its socket goes away: tests/engine_proxy.py cuts
the real engine's socket path for this test's clients only). The run cannot
put the app back itself, so it is not over: it stays running, the app
busy, and once the engine answers again this host's recovery finishes from
the run's journal. The app ends as it was, whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from engine.archive.writer import ArchiveWriter
from snapshots.locks import app_is_locked
from snapshots.models import AppBackupPolicy, Run, Snapshot
from snapshots.run_journal import RunGuard
from snapshots.services.backup import request_backup, run_backup
from snapshots.services.restore import RestoreOptions, request_restore, run_restore
from snapshots.tasks import cleanup
from tests.engine.treegen import snapshot as tree_snapshot
from tests.engine_proxy import EngineProxy
from tests.realistic_data import load_rows, mariadb_sql, table_digest
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def engine(settings: Any, tmp_path: Path) -> Iterator[EngineProxy]:
    proxy = EngineProxy(Path(f"/tmp/engine-proxy-{tmp_path.name[-12:]}.sock"))
    proxy.up()
    settings.DOCKER_HOST = proxy.url
    settings.BACKUP_ROOT = tmp_path / "backups"
    settings.BACKUP_SPOOL_DIR = tmp_path / "spool"
    yield proxy
    proxy.down()


def statuses(stack: ComposeStack) -> dict[str, str]:
    out = {}
    for service in ("mariadb", "wordpress"):
        container = stack.container(service)
        container.reload()
        out[service] = container.status
    return out


def test_engine_unreachable_while_a_pause_backup_reads_volumes(
    wordpress: ComposeStack, engine: EngineProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    AppBackupPolicy.objects.create(app_id=wordpress.project, include_databases=False)
    original = ArchiveWriter.add_volume

    def engine_goes_away(self: ArchiveWriter, *args: Any, **kwargs: Any) -> Any:
        engine.down()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ArchiveWriter, "add_volume", engine_goes_away)
    run = request_backup(wordpress.project, consistency="pause")
    snapshot = run_backup(str(run.pk))
    assert snapshot.status == Snapshot.Status.FAILED
    assert "left paused" in snapshot.error and "ConnectionError" in snapshot.error
    assert statuses(wordpress) == {"mariadb": "paused", "wordpress": "paused"}
    run.refresh_from_db()
    assert run.state == Run.State.RUNNING and run.phase == "awaiting recovery"
    assert app_is_locked(wordpress.project)

    engine.up()  # the engine answers again
    recovery = cleanup()["recovered_runs"][str(run.pk)]
    assert recovery["failed"] == [], recovery
    assert statuses(wordpress) == {"mariadb": "running", "wordpress": "running"}
    run.refresh_from_db()
    assert run.state == Run.State.FAILED and "put the app back" in run.error
    assert not app_is_locked(wordpress.project)


def test_engine_unreachable_in_the_middle_of_a_restore(
    wordpress: ComposeStack, docker_client: docker.DockerClient, engine: EngineProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    load_rows(wordpress, "notes", rows=4000)
    backup = run_backup(str(request_backup(wordpress.project).pk))
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    mariadb_sql(wordpress, "UPDATE notes SET body = 'after the backup' WHERE id <= 2000")
    files = Path(docker_client.volumes.get(wordpress.volume("wordpress")).attrs["Mountpoint"])
    (files / "added-after-backup").write_text("later")
    old = (table_digest(wordpress, "notes"), tree_snapshot(files))
    original = RunGuard.__call__

    def engine_goes_away_at_start(self: RunGuard, step: str, details: Any) -> None:
        original(self, step, details)
        if step == "start":  # volumes swapped, database restored, app still stopped
            engine.down()

    monkeypatch.setattr(RunGuard, "__call__", engine_goes_away_at_start)
    run = run_restore(str(request_restore(wordpress.project, backup.backup_id,
                                          RestoreOptions()).pk))  # fmt: skip
    monkeypatch.undo()
    assert run.state == Run.State.RUNNING and run.phase == "awaiting recovery", run.error
    assert run.result["not_rolled_back"], run.result
    assert app_is_locked(wordpress.project)

    engine.up()
    recovery = cleanup()["recovered_runs"][str(run.pk)]
    assert recovery["failed"] == [], recovery
    assert statuses(wordpress) == {"mariadb": "running", "wordpress": "running"}
    assert (table_digest(wordpress, "notes"), tree_snapshot(files)) == old
    run.refresh_from_db()
    assert run.state == Run.State.FAILED and "put the app back" in run.error
    assert not app_is_locked(wordpress.project)
