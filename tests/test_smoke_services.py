"""Smoke tests of the real services: Django on PostgreSQL, the health probe,
and a Celery task round trip through Redis with a real worker process."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django_celery_results.models import TaskResult

from backup_project.celery import app as celery_app
from snapshots.tasks import ping


@pytest.mark.django_db
def test_django_runs_on_postgresql() -> None:
    assert connection.vendor == "postgresql"
    user = get_user_model().objects.create_user("alice", password="pw-123456")
    assert get_user_model().objects.get(pk=user.pk).username == "alice"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        assert int(cursor.fetchone()[0].split(".")[0]) >= 13


@pytest.mark.django_db
def test_health_reports_database_and_broker_ok(client: Client) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 200
    assert body["data"] == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


@pytest.mark.django_db
def test_health_is_503_when_the_broker_is_down(client: Client) -> None:
    original = celery_app.conf.broker_write_url
    # Port 1 on loopback: nothing listens there, the connection is refused.
    celery_app.conf.broker_write_url = "redis://127.0.0.1:1/0"
    try:
        response = client.get("/api/v1/health")
    finally:
        celery_app.conf.broker_write_url = original
    assert response.status_code == 503
    body = response.json()
    assert body["data"]["checks"] == {"database": "ok", "broker": "error"}
    assert "127.0.0.1:1" not in response.content.decode()


@pytest.mark.django_db
def test_admin_login_page_is_served(client: Client) -> None:
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"<title>Log in | Backup service</title>" in response.content
    assert b'name="password"' in response.content


@pytest.mark.celery
@pytest.mark.slow
def test_celery_round_trip_through_redis_with_a_real_worker(
    celery_worker: object, celery_queue: str, settings: object
) -> None:
    result = ping.apply_async(args=["hello"], queue=celery_queue)
    value = result.get(timeout=60)
    assert value["payload"] == "hello"
    assert value["host_id"] == settings.BACKUP_HOST_ID
    # The result is stored in the database (django-celery-results), where the
    # admin and the API read it.
    row = TaskResult.objects.get(task_id=result.id)
    assert row.status == "SUCCESS" and row.task_name == "snapshots.ping"
    assert celery_app.conf.worker_prefetch_multiplier == 1
    assert celery_app.conf.task_track_started is True
    visibility = celery_app.conf.broker_transport_options["visibility_timeout"]
    assert visibility > celery_app.conf.task_time_limit
