"""The log context: the ids a claimed run binds, a nested run (a restore's
safety backup) giving the outer run's ids back when it ends, a fresh
context per web request, and the settings of metrics and logs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from backup_project.env import Env
from monitoring import log_context
from monitoring.log_format import JsonFormatter, PlainFormatter
from snapshots.models import Run
from snapshots.runs import claim_run, fail_run, finish_run
from tests.conftest import REPO_ROOT


def _record(message: str = "hello %s", args: tuple = ("world",)) -> logging.LogRecord:
    record = logging.LogRecord("snapshots.x", logging.INFO, __file__, 1, message, args, None)
    log_context.ContextFilter().filter(record)
    return record


@pytest.fixture(autouse=True)
def empty_context() -> None:
    log_context.clear()


@pytest.mark.django_db
def test_a_claimed_run_binds_its_ids_and_a_nested_one_gives_them_back() -> None:
    outer = Run.objects.create(operation="restore", app_id="wp", state="pending")
    inner = Run.objects.create(operation="backup", app_id="wp", state="pending")
    log_context.start(task_id="task-1")
    claim_run(str(outer.pk))
    assert log_context.current() == {
        "task_id": "task-1", "run_id": str(outer.pk), "app_id": "wp",
        "host_id": django_settings.BACKUP_HOST_ID,
    }  # fmt: skip
    claim_run(str(inner.pk))  # the safety backup
    assert log_context.current()["run_id"] == str(inner.pk)
    finish_run(Run.objects.get(pk=inner.pk), {})
    assert log_context.current()["run_id"] == str(outer.pk)
    fail_run(Run.objects.get(pk=outer.pk), "failed")
    # The outermost run's ids stay for the lines logged after its end.
    assert log_context.current()["run_id"] == str(outer.pk)
    entry = json.loads(JsonFormatter().format(_record()))
    assert entry["message"] == "hello world" and entry["run_id"] == str(outer.pk)
    assert entry["task_id"] == "task-1" and entry["level"] == "INFO"
    assert entry["logger"] == "snapshots.x" and entry["time"].endswith("+00:00")


def test_json_is_one_line_whatever_the_message_and_carries_the_traceback() -> None:
    try:
        raise RuntimeError("inner\nline")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "a\nb", (), sys.exc_info())
    text = JsonFormatter().format(record)
    assert "\n" not in text
    entry = json.loads(text)
    assert entry["message"] == "a\nb" and "RuntimeError: inner" in entry["exception"]
    assert "run_id" not in entry  # none in play


def test_plain_format_shows_the_ids() -> None:
    formatter = PlainFormatter("%(levelname)s %(log_context)s%(message)s")
    assert formatter.format(_record()) == "INFO hello world"
    log_context.push(run_id="r-1", app_id="wp", host_id="h1")
    assert formatter.format(_record()) == "INFO [run=r-1 app=wp host=h1] hello world"


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="password"):
        log_context.push(password="x")


def _logging_view(request: HttpRequest) -> HttpResponse:
    logging.getLogger("tests.probe").warning("inside a request")
    return HttpResponse("ok")


urlpatterns = [path("probe", _logging_view)]


@pytest.mark.django_db
def test_each_web_request_starts_with_a_fresh_context(settings: Any) -> None:
    """A run bound while serving one request never shows in the next one's lines."""
    settings.ROOT_URLCONF = __name__
    seen: list[dict[str, str]] = []
    log_context.push(run_id="left-over")

    class Probe(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(log_context.current())

    probe = Probe()
    logging.getLogger("tests.probe").addHandler(probe)
    try:
        assert Client().get("/probe").status_code == 200
    finally:
        logging.getLogger("tests.probe").removeHandler(probe)
    assert seen == [{}]
    assert log_context.current() == {"run_id": "left-over"}  # restored after the request


def test_metrics_and_log_settings_are_parsed_strictly(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    assert Env({"BACKUP_METRICS_TOKEN_FILE": str(token_file)}).secret("BACKUP_METRICS_TOKEN") == (
        "s3cret-token"
    )
    assert Env({"A": "10.0.0.0/8, ::1,192.168.1.7"}).networks("A") == [
        "10.0.0.0/8", "::1/128", "192.168.1.7/32",
    ]  # fmt: skip
    with pytest.raises(ImproperlyConfigured, match="A must be comma-separated IP networks"):
        Env({"A": "10.0.0.0/8,intranet"}).networks("A")
    for env, message in [
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be plain or json"),
        ({"BACKUP_METRICS_ALLOW": "10.0.0.300"}, "BACKUP_METRICS_ALLOW must be"),
        ({"BACKUP_METRICS_TOKEN": " "}, "BACKUP_METRICS_TOKEN is set but empty"),
    ]:
        result = subprocess.run(
            [sys.executable, "-c", "import django; django.setup()"], cwd=REPO_ROOT,
            env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "backup_project.settings",
                 "BACKUP_DATA_DIR": str(tmp_path / "var"), **env},
            capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode != 0 and message in result.stderr, result.stderr[-500:]
        assert "s3cret" not in result.stderr


@pytest.mark.django_db
def test_api_requests_log_the_app_and_task_ids_of_their_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lines logged while an API request runs carry its URL's ids, when they
    have an id's shape (a newline in a path never reaches the log context)."""
    from rest_framework.test import APIClient

    from snapshots import selectors
    from snapshots.services.api_keys import create_api_key

    seen: list[dict[str, str]] = []

    def looked_up(*args: object, **kwargs: object) -> None:
        seen.append(log_context.current())  # what a line logged here would carry
        raise selectors.NotFound("no such thing")

    monkeypatch.setattr(selectors, "get_run", looked_up)
    monkeypatch.setattr(selectors, "get_app_summary", looked_up)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=create_api_key("logs", scope="read")[1])
    task = "5b0b8f1e-7d4c-4a55-9d4b-9b0b7a0e0a11"
    assert client.get(f"/api/v1/backup/tasks/{task}").status_code == 404
    assert client.get("/api/v1/backup/apps/wordpress_1").status_code == 404
    assert client.get("/api/v1/backup/apps/evil%0Aapp=x").status_code == 404
    assert seen == [{"task_id": task}, {"app_id": "wordpress_1"}, {}]
