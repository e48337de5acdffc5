"""The dashboard on the embedded setup `make run` uses (SQLite, no
DATABASE_URL): its raw queries give naive datetimes there, and a verify run
once made the start page a 500 (found trying `make run`). A child process
with the production settings on a fresh SQLite file renders it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

SCRIPT = r"""
import django
django.setup()
from django.core.management import call_command
from django.contrib.auth.models import User
from django.test import Client
from snapshots.models import Run, Snapshot
from schedules.models import Schedule

call_command("migrate", verbosity=0)
call_command("collectstatic", interactive=False, verbosity=0)  # as scripts/run.sh
snapshot = Snapshot.objects.create(
    backup_id="backup_20260105_103000_abcdef", app_id="lite", host_id="h",
    status="completed", size_bytes=2048, sha256="0" * 64,
)
Run.objects.create(operation="verify", app_id="lite", snapshot=snapshot, state="completed",
                   options={"deep": True}, result={"valid": True})
Schedule.objects.create(app_id="lite", frequency="hourly", time="00:15")
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(User.objects.create_superuser("lite", password=None))
page = client.get("/admin/")
print(page.status_code)
print("valid (deep)" in page.content.decode())
"""


def test_the_dashboard_renders_on_sqlite(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="backup_project.settings",
        BACKUP_DATA_DIR=str(tmp_path / "data"),
        DOCKER_HOST="tcp://127.0.0.1:9",  # the host's apps are not what this is about
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["200", "True"], (done.stdout, done.stderr[-3000:])
    assert (tmp_path / "data" / "db.sqlite3").exists()
