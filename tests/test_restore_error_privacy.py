"""A restore that fails on a row of a real database: the run's error, the
command's message, the API's answers, the admin and every log name the
server's error line and hold none of the row's data.

The backup is real, except that its dump is broken on the way into the
archive (a syntax error in MariaDB's INSERT, a duplicate under PostgreSQL's
unique index); the archive is then consistent, passes validation, and the
restore fails where the server meets that row. The safety backup taken by
the restore is a good one, so the rollback puts the data back."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from rest_framework.test import APIClient

import engine.dumps
from engine.dumps import DumpFile
from snapshots.models import Run, Snapshot
from snapshots.services.api_keys import create_api_key
from tests.backup_helpers import RESTORE_TEST_MARKS, backup_now
from tests.conftest import manage_py, subprocess_env
from tests.stacks import ComposeStack

pytestmark = RESTORE_TEST_MARKS

API = "/api/v1/backup"
ROW_SECRET = "SECRET-ROW-7f3a91c2"
# What of the rows and the statements must never show.
LEAKS = (ROW_SECRET, "alice@", "zzzzzzzzzzzzzzzzzzzz", "INSERT INTO", "near '", "Key (", "DETAIL")


def _assert_no_row_data(**texts: str) -> None:
    for where, text in texts.items():
        for leaked in LEAKS:
            assert leaked not in text, f"{leaked!r} shows in {where}"


def _backup_with_broken_dump(
    monkeypatch: pytest.MonkeyPatch, app_id: str, breaks: Callable[[DumpFile], bytes | None]
) -> Snapshot:
    """A real backup of APP_ID whose dumps pass through BREAKS on their way
    into the archive (None: keep the dump as it is)."""
    real = engine.dumps.dump_database

    def dump_and_break(*args: Any) -> list[DumpFile]:
        dumps = []
        for dump in real(*args):
            data = breaks(dump)
            if data is not None:
                dump.path.write_bytes(data)
                dump = replace(dump, size=len(data), sha256=hashlib.sha256(data).hexdigest())
            dumps.append(dump)
        return dumps

    with monkeypatch.context() as patched:
        patched.setattr(engine.dumps, "dump_database", dump_and_break)
        snapshot = backup_now(app_id)
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    return snapshot


def _restore_from_the_command_line(app_id: str, backup_id: str) -> tuple[Run, str]:
    with pytest.raises(CommandError) as caught:
        call_command("backup", "restore", app_id, backup_id)
    run = Run.objects.filter(operation="restore", app_id=app_id).latest("created_at")
    assert run.state == Run.State.FAILED
    return run, str(caught.value)


def _api() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=create_api_key("privacy-test", scope="admin")[1])
    return client


def _admin_pages(admin_client: Client, run: Run) -> str:
    pages = [
        admin_client.get("/admin/snapshots/run/"),
        admin_client.get(f"/admin/snapshots/run/{run.pk}/change/"),
    ]
    assert all(page.status_code == 200 for page in pages)
    return "\n".join(page.content.decode() for page in pages)


def _mariadb(stack: ComposeStack, sql: str) -> str:
    password = stack.services[0].environment["MYSQL_ROOT_PASSWORD"]
    cmd = ["mariadb", "-uroot", "-N", "-B", "wordpress", "-e", sql]
    return stack.exec("mariadb", cmd, {"MYSQL_PWD": password})


def test_mariadb_restore_failing_on_a_row_shows_no_row_data(
    wordpress: ComposeStack,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    admin_client: Client,
    settings: Any,
    celery_queue: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    caplog.set_level("DEBUG")
    rows = ",".join(f"({i}, 'alice@example.com {ROW_SECRET}-{i} {'z' * 3000}')"
                    for i in range(1, 9))  # fmt: skip
    _mariadb(wordpress, f"CREATE TABLE vault (id INT PRIMARY KEY, note TEXT); "
                        f"INSERT INTO vault VALUES {rows}")  # fmt: skip
    statement_line: list[int] = []

    def syntax_error_in_a_row(dump: DumpFile) -> bytes:
        text = dump.path.read_text()
        assert "),\n(5," in text  # mariadb-dump writes one row per line
        broken = text.replace("),\n(5,", "),\n(5,,", 1)
        insert = "INSERT INTO `vault` VALUES"
        statement_line.append(
            next(n for n, line in enumerate(broken.splitlines(), 1) if insert in line)
        )
        return broken.encode()

    backup = _backup_with_broken_dump(monkeypatch, wordpress.project, syntax_error_in_a_row)
    server_line = f"ERROR 1064 (42000) at line {statement_line[0]}: You have an error in your SQL"

    # From the command line.
    run, command_error = _restore_from_the_command_line(wordpress.project, backup.backup_id)
    assert server_line in run.error and server_line in command_error
    assert any(item.startswith("database") for item in run.result["rolled_back"])
    assert "ran in this command, not on a worker" in command_error
    assert "standard error" in command_error
    assert _mariadb(wordpress, "SELECT COUNT(*) FROM vault").strip() == "8"  # rolled back
    api = _api()
    task = api.get(f"{API}/tasks/{run.pk}")
    assert server_line in task.content.decode()
    output = capsys.readouterr()
    _assert_no_row_data(
        run_error=run.error,
        run_result=json.dumps(run.result),
        command_error=command_error,
        api_task=task.content.decode(),
        admin=_admin_pages(admin_client, run),
        log=caplog.text,
        stdout=output.out,
        stderr=output.err,
    )

    # Through the API and a real worker.
    settings.BACKUP_TASK_QUEUE = celery_queue
    settings.BACKUP_API_WAIT_SECONDS = 300
    request.getfixturevalue("celery_worker")
    started = time.monotonic()
    answer = api.post(f"{API}/restore/{wordpress.project}/{backup.backup_id}?wait=true", {}, "json")
    assert answer.status_code == 500, answer.content
    body = answer.content.decode()
    assert server_line in body and time.monotonic() - started < 300
    worker_run = Run.objects.filter(operation="restore").latest("created_at")
    assert worker_run.pk != run.pk and server_line in worker_run.error
    worker_log = (tmp_path / "worker.log").read_text()
    assert server_line in worker_log  # the task's result, logged by Celery
    _assert_no_row_data(
        api_restore=body,
        api_task=api.get(f"{API}/tasks/{worker_run.pk}").content.decode(),
        worker_run=worker_run.error + json.dumps(worker_run.result),
        worker_log=worker_log,
        log=caplog.text,
    )


def _psql(stack: ComposeStack, sql: str, db: str = "odoo") -> str:
    return stack.exec("postgres", ["psql", "-U", stack.project, "-d", db, "-tAc", sql])


def test_postgres_restore_failing_on_a_row_shows_no_row_data(
    odoo: ComposeStack, monkeypatch: pytest.MonkeyPatch, admin_client: Client
) -> None:
    """pg_restore stops at the unique index the duplicate breaks; its DETAIL
    line ("Key (email)=(...) is duplicated") holds the row's value. The
    restore runs as `manage.py backup restore` in its own process, whose
    standard error is where its log goes."""
    _psql(odoo, "CREATE DATABASE odoo", db="postgres")
    _psql(odoo, "CREATE TABLE res_partner (id serial PRIMARY KEY, email text UNIQUE, note text);"
                f"INSERT INTO res_partner (email, note) VALUES ('{ROW_SECRET}-1', 'alice@x'),"
                f"('{ROW_SECRET}-2', 'bob')")  # fmt: skip

    def duplicate_email(dump: DumpFile) -> bytes | None:
        if dump.database != "odoo":
            return None
        data = dump.path.read_bytes()  # same length: the custom format's structure holds
        assert f"{ROW_SECRET}-2".encode() in data
        return data.replace(f"{ROW_SECRET}-2".encode(), f"{ROW_SECRET}-1".encode())

    backup = _backup_with_broken_dump(monkeypatch, odoo.project, duplicate_email)
    env = subprocess_env() | {"LOG_LEVEL": "INFO"}
    command = manage_py("backup", "restore", odoo.project, backup.backup_id, env=env)
    out, err = command.communicate(timeout=600)
    assert command.returncode == 1, err
    run = Run.objects.filter(operation="restore", app_id=odoo.project).latest("created_at")
    server_line = (
        "pg_restore: error: could not execute query: ERROR:  could not create unique index "
        '"res_partner_email_key"'
    )
    assert run.state == Run.State.FAILED and server_line in run.error
    assert run.error.startswith("restore failed: ") and f"CommandError: {run.error}\n" in err
    assert (
        f"Run {run.pk} ran in this command, not on a worker: its log (LOG_LEVEL=INFO) went to "
        "this command's standard error." in err
    )
    assert _psql(odoo, "SELECT count(*) FROM res_partner").strip() == "2"  # rolled back
    task = _api().get(f"{API}/tasks/{run.pk}").content.decode()
    assert server_line.replace('"', '\\"') in task
    _assert_no_row_data(
        run_error=run.error,
        run_result=json.dumps(run.result),
        api_task=task,
        admin=_admin_pages(admin_client, run),
        stdout=out,
        stderr=err,
    )
