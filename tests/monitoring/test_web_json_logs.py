"""LOG_FORMAT=json in the web process, run as scripts/run.sh runs it
(gunicorn with monitoring.gunicorn_conf, two workers, the access log on
stdout): every line gunicorn and Django write parses as one JSON object,
and the lines of a request carry its ids: a quick verify's run id, app id
and host id, and an API URL's app id on Django's "Not Found" line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from snapshots.models import Run
from snapshots.services.api_keys import create_api_key
from tests.conftest import REPO_ROOT, subprocess_env
from tests.s3_servers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _wait_until_up(base: str, process: subprocess.Popen[bytes], err: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, err.read_text()[-3000:]
        try:
            requests.get(f"{base}/api/v1/health", timeout=10)
            return
        except (requests.ConnectionError, requests.Timeout):  # still booting
            time.sleep(0.3)
    raise AssertionError(f"gunicorn did not answer: {err.read_text()[-3000:]}")


def _entries(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines]  # every line is one JSON object


def test_gunicorn_and_django_write_json_lines_with_the_request_ids(
    stored_snapshot: Any, backup_root: Path, tmp_path: Path
) -> None:
    snapshot = stored_snapshot(b"the archive as stored", app_id="weblog_app")
    (backup_root / snapshot.storage_key).write_bytes(b"not what was stored")  # verify fails
    key = create_api_key("web json logs", scope="admin")[1]
    env = subprocess_env() | {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        # As scripts/run.sh starts it.
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "backup_project.wsgi",
             "--config", "python:monitoring.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "--timeout", "120", "--access-logfile", "-"],
            cwd=REPO_ROOT, env=env, stdout=stdout, stderr=stderr,
        )  # fmt: skip
    try:
        _wait_until_up(base, web, err)
        api = f"{base}/api/v1/backup"
        headers = {"X-API-Key": key}
        verify = f"{api}/snapshots/{snapshot.backup_id}/verify"
        assert requests.post(verify, json={"deep": False}, headers=headers, timeout=30).ok
        missing = requests.get(f"{api}/apps/nosuch-weblog-app", headers=headers, timeout=30)
        assert missing.status_code == 404
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=60)

    run = Run.objects.get(operation="verify")
    assert run.state == Run.State.FAILED  # the tampered archive: verify_failed is logged
    errors, access = _entries(err), _entries(out)
    for entry in errors + access:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
    assert any(e["logger"] == "gunicorn.error" and "Booting worker" in e["message"] for e in errors)
    lines = [e["message"] for e in access if e["logger"] == "gunicorn.access"]
    assert any(f"/snapshots/{snapshot.backup_id}/verify" in line for line in lines), lines

    in_run = [e for e in errors if e.get("run_id") == str(run.pk)]
    assert in_run, errors
    for entry in in_run:
        assert entry["app_id"] == "weblog_app" and entry["host_id"] == run.host_id, entry
    assert any("verify_failed" in e["message"] for e in in_run), in_run
    not_found = [e for e in errors if e["logger"] == "django.request"]
    assert [(e["message"], e.get("app_id"), e.get("run_id")) for e in not_found] == [
        ("Not Found: /api/v1/backup/apps/nosuch-weblog-app", "nosuch-weblog-app", None)
    ], not_found
