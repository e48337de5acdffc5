"""The dashboard as the admin's start page: every app known to the database,
problems first, its warnings, charts as SVG, a fixed number of queries, and
the raw Celery tables hidden from non-superusers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from schedules.models import Schedule
from snapshots.models import Run, Snapshot
from tests.api.conftest import MakeSnapshot

pytestmark = pytest.mark.django_db


def rows_in_order(page: str) -> list[str]:
    import re

    return re.findall(r'<tr class="level-(\w+)" data-app="([^"]+)"', page)


def test_dashboard_shows_every_app_problems_first(
    admin_client: Client, make_snapshot: MakeSnapshot, settings
) -> None:
    now = timezone.now()
    good = make_snapshot(app_id="alpha", size_bytes=3 * 1024 * 1024)
    Snapshot.objects.filter(pk=good.pk).update(created_at=now - timedelta(hours=2))
    Run.objects.create(operation="verify", app_id="alpha", snapshot=good, state="completed",
                       result={"valid": True})  # fmt: skip
    make_snapshot(app_id="beta", minutes=1)
    broken = make_snapshot(app_id="beta", minutes=2, status="failed", size_bytes=None,
                           error="the engine went away")  # fmt: skip
    Schedule.objects.create(app_id="gamma", frequency="daily", time="02:00")
    Run.objects.create(operation="backup", app_id="delta", state="pending")

    page = admin_client.get("/admin/").content.decode()

    order = rows_in_order(page)
    assert [app for _, app in order[:3]] == ["beta", "delta", "gamma"], order
    assert dict((app, level) for level, app in order) == {
        "alpha": "ok", "beta": "danger", "gamma": "danger", "delta": "danger",
    }  # fmt: skip
    assert "last backup failed" in page and "no backup" in page and "unverified" in page
    assert broken.backup_id not in page  # the status and age, not a list of snapshots
    assert "3.0 MiB" in page and "2h ago" in page
    assert settings.BACKUP_HOST_ID in page or "test" in page  # the host column
    assert '<svg class="chart"' in page and "Storage used per location" in page
    # gamma's schedule: its next run is shown.
    assert " UTC</td>" in page


def test_overdue_schedule_and_failed_verification_are_warnings(
    admin_client: Client, make_snapshot: MakeSnapshot
) -> None:
    old = make_snapshot(app_id="shop")
    Snapshot.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=5))
    schedule = Schedule.objects.create(app_id="shop", frequency="daily", time="02:00")
    Schedule.objects.filter(pk=schedule.pk).update(created_at=timezone.now() - timedelta(days=30))
    Run.objects.create(operation="verify", app_id="shop", snapshot=old, state="completed",
                       result={"valid": False})  # fmt: skip
    page = admin_client.get("/admin/").content.decode()
    assert f"schedule {schedule.pk} overdue" in page
    assert "last verification failed" in page
    assert rows_in_order(page) == [("warning", "shop")]


def test_chain_length_counts_parents(admin_client: Client, make_snapshot: MakeSnapshot) -> None:
    full = make_snapshot(app_id="chain")
    child = make_snapshot(app_id="chain", minutes=1, kind="incremental", parent=full)
    make_snapshot(app_id="chain", minutes=2, kind="incremental", parent=child)
    from console.selectors import dashboard

    (app,) = dashboard().apps
    assert app.chain_length == 3 and app.snapshots == 3


def test_dashboard_queries_do_not_grow_with_apps(
    admin_client: Client, make_snapshot: MakeSnapshot, django_assert_max_num_queries
) -> None:
    for i in range(40):
        make_snapshot(app_id=f"app{i:03d}", minutes=i)
        Schedule.objects.create(app_id=f"app{i:03d}", frequency="daily", time="03:00")
    # Session, user, the dashboard's seven reads, messages: not one per app.
    with django_assert_max_num_queries(12):
        response = admin_client.get("/admin/")
    assert response.status_code == 200 and len(rows_in_order(response.content.decode())) == 40


def test_stock_index_is_a_link_for_superusers_only(admin_client: Client, db: None) -> None:
    page = admin_client.get("/admin/").content.decode()
    assert 'href="?apps=1"' in page
    stock = admin_client.get("/admin/", {"apps": "1"}).content.decode()
    assert 'id="app-table"' not in stock and "django_celery_results/taskresult/" in stock

    staff = User.objects.create_user("operator", password="pw-operator-1", is_staff=True)
    client = Client()
    client.force_login(staff)
    page = client.get("/admin/", {"apps": "1"}).content.decode()
    assert 'id="app-table"' in page and 'href="?apps=1"' not in page


def test_celery_tables_hidden_from_non_superusers(admin_client: Client, db: None) -> None:
    staff = User.objects.create_user("operator", password="pw-operator-1", is_staff=True)
    staff.user_permissions.set(Permission.objects.all())  # every permission, not superuser
    client = Client()
    client.force_login(staff)
    labels = {app["app_label"] for app in client.get("/admin/snapshots/").context["available_apps"]}
    assert "snapshots" in labels and "schedules" in labels
    assert not labels & {"django_celery_beat", "django_celery_results"}
    assert client.get("/admin/django_celery_results/").status_code == 404

    # Superusers keep the task results; beat's tables are not in the admin at all
    # (the Schedules admin unregisters them: schedules are edited as Schedules).
    superuser_page = admin_client.get("/admin/snapshots/")
    mine = {app["app_label"] for app in superuser_page.context["available_apps"]}
    assert "django_celery_results" in mine and "django_celery_beat" not in mine
