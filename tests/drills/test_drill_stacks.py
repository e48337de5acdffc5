"""Restore drills against real stacks (MariaDB, PostgreSQL): a good snapshot
passes with the source's row counts, an altered dump fails naming the
table, nothing is left behind, and the app's containers are not touched."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import docker
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from drills.models import Drill
from snapshots.models import Snapshot
from tests.backup_helpers import archive_path, backup_now
from tests.drills.helpers import (
    container_states,
    drill_objects,
    drop_rows_in_archive,
    mariadb_counts,
    postgres_counts,
    seed_mariadb,
    seed_postgres,
)
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def _drill(backup_id: str, *args: str) -> Drill:
    """`backup drill BACKUP_ID`, or `backup drill ARGS` (e.g. --app) when given."""
    with contextlib.suppress(CommandError):  # the drill row says why; the tests look at it
        call_command("backup", "drill", *(args or [backup_id]))
    return Drill.objects.filter(backup_id=backup_id).latest("created_at")


def _by_database(drill: Drill) -> dict[str, dict]:
    return {d["database"]: d for d in drill.databases}


def test_a_good_mariadb_snapshot_passes_with_the_sources_row_counts(
    wordpress: ComposeStack, docker_client: docker.DockerClient
) -> None:
    seed_mariadb(wordpress)
    source = mariadb_counts(wordpress)
    snapshot = backup_now(wordpress.project)
    entry = next(d for d in snapshot.contents["databases"] if d["database"] == "wordpress")
    assert entry["row_counts"] == source  # recorded at dump time, exact
    before = container_states(docker_client, wordpress)

    drill = _drill(snapshot.backup_id)

    assert drill.outcome == Drill.Outcome.PASSED, drill.reason
    result = _by_database(drill)["wordpress"]
    assert result["ok"] and result["counts_recorded"] and not result["mismatches"]
    assert result["rows"] == sum(source.values()) == result["rows_recorded"]
    assert result["tables"] == len(source) == 3
    assert result["image"] == docker_client.api.inspect_container(
        wordpress.container("mariadb").id)["Image"]  # fmt: skip
    assert drill.verify["valid"] is True
    assert container_states(docker_client, wordpress) == before
    assert drill_objects(docker_client) == []


def test_a_good_postgres_snapshot_passes_with_the_sources_row_counts(
    odoo: ComposeStack, docker_client: docker.DockerClient
) -> None:
    seed_postgres(odoo)
    source = postgres_counts(odoo)
    snapshot = backup_now(odoo.project)
    before = container_states(docker_client, odoo)

    drill = _drill(snapshot.backup_id, "--app", odoo.project)  # the app's latest snapshot

    assert drill.outcome == Drill.Outcome.PASSED, drill.reason
    result = _by_database(drill)["postgres"]
    assert result["rows"] == sum(source.values()) and result["tables"] == len(source)
    entry = next(d for d in snapshot.contents["databases"] if d["database"] == "postgres")
    assert entry["row_counts"] == source
    assert container_states(docker_client, odoo) == before
    assert drill_objects(docker_client) == []


def test_a_dump_that_lost_rows_but_passes_verify_fails_the_drill_naming_the_table(
    wordpress: ComposeStack, docker_client: docker.DockerClient
) -> None:
    seed_mariadb(wordpress)
    snapshot = backup_now(wordpress.project)
    path = archive_path(snapshot, Path(settings.BACKUP_ROOT))
    drop_rows_in_archive(path, "wp_posts", keep=3)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    Snapshot.objects.filter(pk=snapshot.pk).update(sha256=digest, size_bytes=path.stat().st_size)
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
    call_command("backup", "verify", snapshot.backup_id, "--deep")  # still passes: raises if not
    before = container_states(docker_client, wordpress)

    drill = _drill(snapshot.backup_id)

    assert drill.outcome == Drill.Outcome.FAILED
    assert "table wp_posts: 3 rows restored, 40 at backup time" in drill.reason
    result = _by_database(drill)["wordpress"]
    assert result["ok"] is False and result["mismatches"] == [
        "table wp_posts: 3 rows restored, 40 at backup time"
    ]
    assert container_states(docker_client, wordpress) == before
    assert drill_objects(docker_client) == []
    assert json.loads(json.dumps(drill.databases))  # stored as plain JSON
