"""Restore drills against real stacks (MariaDB, PostgreSQL): a good snapshot
passes with the source's row counts, an altered dump fails naming the
table, nothing is left behind, and the app's containers are not touched."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import docker
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils.html import escape
from rest_framework.test import APIClient

from drills.models import Drill
from schedules.models import AppNotificationTargets, Notification
from schedules.notifications import attempt_delivery
from schedules.secrets import encrypt_targets
from snapshots.services.api_keys import create_api_key
from tests.backup_helpers import archive_path, backup_now
from tests.drills.helpers import (
    container_states,
    drill_objects,
    drop_pg_rows_in_archive,
    drop_rows_in_archive,
    mariadb_counts,
    postgres_counts,
    restamp,
    seed_mariadb,
    seed_postgres,
)
from tests.schedules import notify_servers
from tests.schedules.notify_servers import HttpReceiver
from tests.stacks import ComposeStack

http_receiver = notify_servers.http_receiver

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
    assert drill_objects(docker_client, str(drill.pk)) == []


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
    assert drill_objects(docker_client, str(drill.pk)) == []


def test_a_dump_that_lost_rows_but_passes_verify_fails_the_drill_naming_the_table(
    wordpress: ComposeStack,
    docker_client: docker.DockerClient,
    http_receiver: HttpReceiver,
    admin_client: Client,
) -> None:
    """And what the operator sees of it: the CLI, the API, the admin and the
    notification all say which database, which table, expected and found."""
    seed_mariadb(wordpress)
    snapshot = backup_now(wordpress.project)
    path = archive_path(snapshot, Path(settings.BACKUP_ROOT))
    drop_rows_in_archive(path, "wp_posts", keep=3)
    restamp(snapshot, path)
    call_command("backup", "verify", snapshot.backup_id, "--deep")  # still passes: raises if not
    AppNotificationTargets.objects.create(
        app_id=wordpress.project, targets_encrypted=encrypt_targets([http_receiver.url()])
    )
    before = container_states(docker_client, wordpress)

    with pytest.raises(CommandError) as failed:
        call_command("backup", "drill", snapshot.backup_id)
    drill = Drill.objects.get(backup_id=snapshot.backup_id)

    mariadb = wordpress.container("mariadb").name
    table = "table wp_posts: expected 40 rows (counted when the dump was made), found 3 after "
    table += "the restore"
    assert drill.outcome == Drill.Outcome.FAILED
    assert drill.reason == f"database wordpress (mariadb, container {mariadb}): {table}"
    assert str(failed.value) == f"drill of {snapshot.backup_id} failed: {drill.reason}"
    result = _by_database(drill)["wordpress"]
    assert result["ok"] is False and result["mismatches"] == [table]
    assert (result["rows"], result["rows_recorded"]) == (5, 42)
    assert container_states(docker_client, wordpress) == before
    assert drill_objects(docker_client, str(drill.pk)) == []
    assert json.loads(json.dumps(drill.databases))  # stored as plain JSON

    api = APIClient()
    api.credentials(HTTP_X_API_KEY=create_api_key("drill-view")[1])
    shown = api.get(f"/api/v1/backup/snapshots/{snapshot.backup_id}").json()["data"]
    assert shown["last_drill"]["outcome"] == "failed"
    assert shown["last_drill"]["reason"] == drill.reason
    listed = api.get("/api/v1/backup/drills", {"snapshot_id": snapshot.backup_id}).json()
    assert listed["data"]["drills"][0]["databases"][0]["mismatches"] == [table]
    page = admin_client.get("/admin/drills/drill/").content.decode()
    assert escape(drill.reason) in page
    page = admin_client.get(f"/admin/drills/drill/{drill.pk}/change/").content.decode()
    assert f"<li>{escape(table)}</li>" in page
    assert "5 rows after the restore; 3 tables, 42 rows when dumped" in page
    note = Notification.objects.get(event=Notification.Event.DRILL_FAILED)
    attempt_delivery(note.pk)
    received = http_receiver.wait_for(1)
    assert received[0]["body"]["title"] == (
        f"Restore drill failed: {wordpress.project} {snapshot.backup_id}"
    )
    assert drill.reason in received[0]["body"]["message"]
    assert received[0]["body"]["type"] == "failure"  # a red mark, as a failed backup's


def test_a_postgres_dump_that_lost_rows_but_passes_verify_fails_the_drill_naming_the_table(
    odoo: ComposeStack, docker_client: docker.DockerClient
) -> None:
    seed_postgres(odoo)
    snapshot = backup_now(odoo.project)
    path = archive_path(snapshot, Path(settings.BACKUP_ROOT))
    drop_pg_rows_in_archive(path, "public.res_partner", keep=3)
    restamp(snapshot, path)
    call_command("backup", "verify", snapshot.backup_id, "--deep")  # still passes: raises if not
    before = container_states(docker_client, odoo)

    drill = _drill(snapshot.backup_id)

    postgres = odoo.container("postgres").name
    table = "table public.res_partner: expected 30 rows (counted when the dump was made), "
    table += "found 3 after the restore"
    assert drill.outcome == Drill.Outcome.FAILED
    assert drill.reason == f"database postgres (postgres, container {postgres}): {table}"
    assert _by_database(drill)["postgres"]["mismatches"] == [table]
    assert container_states(docker_client, odoo) == before
    assert drill_objects(docker_client, str(drill.pk)) == []
