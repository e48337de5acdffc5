"""Issue 15: a MariaDB dump is loaded into a shadow database of the running
server while the staging pass extracts the volumes, and its tables are
swapped in during the downtime (engine/dumps/mysql_shadow.py). The result
equals a load into the live database (tables, rows, the database's
character set); a corrupt archive, a failure after the swap and a dead
worker all leave the database as it was, and no database of the restore's
own behind; a dump with a trigger is loaded in the downtime, as before.

Real stacks on the real engine, real MariaDB servers. The spy on the load
wraps the real function (it records when it ran, and calls it)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import pytest
from django.db.models.functions import Now

import engine.restore.orchestrate as orchestrate
import engine.restore.shadow_loads as shadow_loads
from engine import steps
from engine.dumps.mysql_shadow import ShadowNames, plan_swap, run_swap
from engine.errors import EngineError
from engine.inventory import ContainerInfo, DatabaseCredentials, DatabaseInfo
from engine.secret import Secret
from snapshots.locks import acquire_app_lock
from snapshots.models import AppLock, Run, Snapshot
from snapshots.tasks import cleanup
from tests.backup_helpers import RESTORE_TEST_MARKS, backup_now, restore_now
from tests.images import MARIADB_IMAGE
from tests.stacks import ComposeStack, all_running, mariadb_sql

pytestmark = RESTORE_TEST_MARKS

POSTS = (
    "CREATE TABLE posts (id INT PRIMARY KEY AUTO_INCREMENT, title VARCHAR(200));"
    "INSERT INTO posts (title) SELECT CONCAT('post ', seq) FROM seq_1_to_3000;"
    "CREATE TABLE tags (id INT PRIMARY KEY, post_id INT NOT NULL, "
    "FOREIGN KEY (post_id) REFERENCES posts (id));"
    "INSERT INTO tags SELECT seq, seq FROM seq_1_to_100;"
)
OWN_DATABASES = (
    "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'bs\\_%'"
)


def _sql(stack: ComposeStack, sql: str, database: str = "wordpress") -> str:
    return mariadb_sql(stack, sql, database).strip()


def _state(stack: ComposeStack) -> dict[str, str]:
    return {
        "tables": _sql(stack, "SHOW TABLES"),
        "posts": _sql(stack, "SELECT id, title FROM posts ORDER BY id"),
        "tags": _sql(stack, "SELECT COUNT(*), SUM(post_id) FROM tags"),
        "charset": _sql(stack, "SELECT @@character_set_database, @@collation_database"),
    }


def _change(stack: ComposeStack) -> None:
    """What happened since the backup: rows gone and changed, a new table,
    another default character set."""
    _sql(
        stack,
        "DELETE FROM tags WHERE id > 50; DELETE FROM posts WHERE id > 2000;"
        "UPDATE posts SET title = 'current'; CREATE TABLE junk (x INT);"
        "ALTER DATABASE wordpress CHARACTER SET latin1 COLLATE latin1_swedish_ci",
    )


@pytest.fixture
def load_spy(wordpress: ComposeStack, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The app container's state each time a shadow load starts (the real load runs)."""
    seen: list[str] = []
    real = shadow_loads.load_shadow

    def spy(client: Any, db: Any, *args: Any, **kwargs: Any) -> None:
        app = wordpress.container("wordpress")
        app.reload()
        seen.append(app.status)
        real(client, db, *args, **kwargs)

    monkeypatch.setattr(shadow_loads, "load_shadow", spy)
    return seen


def test_the_dump_is_loaded_while_the_app_runs_and_swapped_in(
    wordpress: ComposeStack, load_spy: list[str]
) -> None:
    _sql(wordpress, POSTS)
    backed_up = _state(wordpress)
    backup = backup_now(wordpress.project)
    assert backup.status == Snapshot.Status.COMPLETED, backup.error
    _change(wordpress)
    assert _state(wordpress) != backed_up

    run = restore_now(wordpress.project, backup.backup_id)

    assert run.state == Run.State.COMPLETED, run.error
    assert load_spy == ["running"]  # loaded once, with the app serving
    assert run.result["databases_loaded_while_running"] == ["wordpress"]
    assert run.result["databases_loaded_in_downtime"] == []
    assert _state(wordpress) == backed_up  # tables (no junk), rows, FK'd rows, charset
    assert _sql(wordpress, OWN_DATABASES) == ""  # the shadow and the aside ones dropped
    phases = run.result["phases"]
    assert phases["databases"] < 5 and "databases_while_running" in phases, phases
    # The safety backup ran while the shadow was there: it holds the live database only.
    safety = Snapshot.objects.get(backup_id=run.result["safety_backup_id"])
    assert [d["database"] for d in safety.contents["databases"]] == ["wordpress"], safety.contents
    # The FK still holds in the swapped-in tables.
    with pytest.raises(AssertionError):
        _sql(wordpress, "INSERT INTO tags VALUES (999, 99999)")
    assert all_running(wordpress)


def test_a_corrupt_archive_leaves_the_live_database_and_no_shadow(
    wordpress: ComposeStack, load_spy: list[str], settings: Any
) -> None:
    _sql(wordpress, POSTS)
    backup = backup_now(wordpress.project)
    archive = Path(settings.BACKUP_ROOT) / backup.storage_key
    data = bytearray(archive.read_bytes())
    data[len(data) * 9 // 10] ^= 0x01  # past the dump, which comes first: it loads whole
    archive.write_bytes(bytes(data))
    _change(wordpress)
    current = _state(wordpress)
    app = wordpress.container("wordpress")
    app.reload()
    app_started = app.attrs["State"]["StartedAt"]

    run = restore_now(wordpress.project, backup.backup_id, "--no-safety-backup")

    assert run.state == Run.State.FAILED and "failed validation" in run.error, run.error
    assert load_spy == ["running"]
    assert _state(wordpress) == current
    assert _sql(wordpress, OWN_DATABASES) == ""
    app = wordpress.container("wordpress")
    app.reload()
    assert app.attrs["State"]["StartedAt"] == app_started  # never stopped
    assert all_running(wordpress)


def test_a_failure_after_the_swap_swaps_the_previous_tables_back(
    wordpress: ComposeStack, load_spy: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _sql(wordpress, POSTS)
    backup = backup_now(wordpress.project)
    _change(wordpress)
    current = _state(wordpress)
    real_start = orchestrate._start_and_check

    def start_then_fail(*args: Any, **kwargs: Any) -> list[str]:
        real_start(*args, **kwargs)  # the app ran on the swapped-in tables
        raise EngineError("injected: the app did not stay up")

    monkeypatch.setattr(orchestrate, "_start_and_check", start_then_fail)
    run = restore_now(wordpress.project, backup.backup_id, "--no-safety-backup")

    assert run.state == Run.State.FAILED and "injected" in run.error
    assert "database wordpress" in run.result["rolled_back"], run.result
    assert _state(wordpress) == current  # swapped back, default charset included
    assert _sql(wordpress, OWN_DATABASES) == ""
    assert all_running(wordpress)


def test_a_dump_with_a_trigger_is_loaded_in_the_downtime(
    wordpress: ComposeStack, load_spy: list[str]
) -> None:
    _sql(wordpress, POSTS)
    _sql(wordpress, "CREATE TRIGGER upper_title BEFORE INSERT ON posts FOR EACH ROW "
                    "SET NEW.title = UPPER(NEW.title)")  # fmt: skip
    backed_up = _state(wordpress)
    backup = backup_now(wordpress.project)
    _sql(wordpress, "DELETE FROM tags; DELETE FROM posts WHERE id > 10")

    run = restore_now(wordpress.project, backup.backup_id, "--no-safety-backup")

    assert run.state == Run.State.COMPLETED, run.error
    assert run.result["databases_loaded_while_running"] == []
    [why] = run.result["databases_loaded_in_downtime"]
    assert "triggers" in why and "wordpress" in why, why
    assert _state(wordpress) == backed_up
    assert _sql(wordpress, "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS") == "upper_title"
    assert _sql(wordpress, OWN_DATABASES) == ""


def test_recovery_after_a_dead_worker_swaps_back_and_drops(
    wordpress: ComposeStack, settings: Any
) -> None:
    """The journal of a restore killed right after its swap: recovery puts
    the previous tables back, drops the restore's databases, starts the app."""
    _sql(wordpress, POSTS)
    before = _state(wordpress)
    names = ShadowNames.for_dump("wordpress", "dead1_0")
    _sql(wordpress, f"CREATE DATABASE {names.shadow}; CREATE TABLE {names.shadow}.posts "
                    "(id INT PRIMARY KEY, title TEXT); INSERT INTO "
                    f"{names.shadow}.posts VALUES (1, 'restored')")  # fmt: skip
    app, mariadb = wordpress.container("wordpress"), wordpress.container("mariadb")
    spec = next(s for s in wordpress.services if s.name == "mariadb")
    password = spec.environment["MYSQL_ROOT_PASSWORD"]
    info = ContainerInfo(mariadb.id, mariadb.name, "mariadb", MARIADB_IMAGE, "running")
    db = DatabaseInfo(info, "mariadb", DatabaseCredentials("root", Secret(password)))
    client = docker.from_env()
    swap = plan_swap(client, db, names)
    app.stop(timeout=5)
    run_swap(client, db, swap)  # what the dead worker did
    assert _sql(wordpress, "SELECT title FROM posts") == "restored"
    snapshot = Snapshot.objects.create(
        backup_id="backup_20260105_103000_3fa2c3", app_id=wordpress.project,
        host_id=settings.BACKUP_HOST_ID, status=Snapshot.Status.COMPLETED,
    )  # fmt: skip
    shadow = {"container": mariadb.id, "database": "wordpress", "shadow": names.shadow,
              "aside": names.aside}  # fmt: skip
    run = Run.objects.create(
        operation=Run.Operation.RESTORE, app_id=wordpress.project, snapshot=snapshot,
        state=Run.State.RUNNING, worker="gone-container-3f2a:1", host_id=settings.BACKUP_HOST_ID,
        heartbeat_at=Now() - timedelta(hours=1),
        journal=[
            {"step": steps.SHADOW, "databases": [shadow]},
            {"step": steps.STOP, "containers": [app.id], "paused": []},
            {"step": steps.DATABASE, "container": mariadb.id, "running": True, "swap": {
                **shadow, "charset": swap.record.charset, "collation": swap.record.collation}},
        ],
    )  # fmt: skip
    acquire_app_lock(wordpress.project, run)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=Now() - timedelta(hours=1))
    AppLock.objects.filter(app_id=wordpress.project).update(expires_at=Now() - timedelta(hours=1))

    recovery = cleanup()["recovered_runs"][str(run.pk)]

    assert "database wordpress: its previous tables swapped back" in recovery["done"], recovery
    assert _state(wordpress) == before
    assert _sql(wordpress, OWN_DATABASES) == ""
    assert f"started {app.name}" in recovery["done"], recovery
    assert all_running(wordpress)
