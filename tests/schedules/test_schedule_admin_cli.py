"""The admin (product terms, actions through the services) and the
`schedule` management command, on the real database and Docker engine."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django_celery_beat.models import PeriodicTask

from schedules.models import Schedule, ScheduleFiring
from tests.schedules.conftest import MakeSchedule
from tests.stacks import ComposeStack

pytestmark = [pytest.mark.django_db, pytest.mark.docker]


def test_admin_lists_in_product_terms_and_actions_keep_beat_in_step(
    admin_client: Client, make_schedule: MakeSchedule
) -> None:
    schedule = make_schedule(frequency="monthly", day_of_month=31, time="01:30",
                             timezone="Europe/Berlin")  # fmt: skip
    page = admin_client.get("/admin/schedules/schedule/").content.decode()
    assert "monthly on the last day at 01:30 Europe/Berlin" in page
    assert "next run" in page.lower() and "last result" in page.lower()
    # The raw beat tables are not offered.
    assert admin_client.get("/admin/django_celery_beat/periodictask/").status_code == 404

    url = "/admin/schedules/schedule/"
    admin_client.post(url, {"action": "disable", "_selected_action": [schedule.pk]})
    assert not PeriodicTask.objects.get(pk=schedule.periodic_task_id).enabled
    admin_client.post(url, {"action": "enable", "_selected_action": [schedule.pk]})
    assert PeriodicTask.objects.get(pk=schedule.periodic_task_id).enabled
    page = admin_client.post(
        url, {"action": "run_now", "_selected_action": [schedule.pk]}, follow=True
    ).content.decode()
    assert ScheduleFiring.objects.get(schedule=schedule).manual
    # Not "Wordpress…": the admin capitalises a message's first letter.
    assert f"Schedule {schedule.pk} (" in page and "backup queued" in page


def test_admin_form_validates_through_the_service(
    admin_client: Client, host_app: ComposeStack
) -> None:
    form = {
        "app_id": host_app.project, "enabled": "on", "frequency": "weekly", "time": "02:00",
        "timezone": "Europe/Berlin", "jitter_seconds": "0", "backup_type": "full",
        "storage_location": "local",
    }  # fmt: skip
    secret_target = {"new_targets": "json://user:S3CRETX@127.0.0.1:9/hook"}
    response = admin_client.post("/admin/schedules/schedule/add/", form | secret_target)
    assert response.status_code == 200 and "weekday 0-6" in response.content.decode()
    assert "S3CRETX" not in response.content.decode()  # the form shown again echoes no secret
    assert not Schedule.objects.exists()
    response = admin_client.post("/admin/schedules/schedule/add/", form | {"weekday": "2"})
    assert response.status_code == 302, response.content.decode()[-2000:]
    schedule = Schedule.objects.get()
    assert schedule.periodic_task.crontab.day_of_week == "3"


def test_cli_create_list_disable_run_delete(host_app: ComposeStack) -> None:
    out = StringIO()
    call_command("schedule", "create", host_app.project, "--frequency", "daily", "--time",
                 "03:15", "--timezone", "Asia/Tokyo", "--retention-days", "14",
                 "--target", "json://user:hunter2@127.0.0.1:9/x", stdout=out)  # fmt: skip
    schedule = Schedule.objects.get()
    assert f"created schedule {schedule.pk}: daily at 03:15 Asia/Tokyo" in out.getvalue()
    out = StringIO()
    call_command("schedule", "list", stdout=out)
    assert host_app.project in out.getvalue() and "next 20" in out.getvalue()
    out = StringIO()
    call_command("schedule", "show", str(schedule.pk), stdout=out)
    assert "hunter2" not in out.getvalue() and "json://" in out.getvalue()
    call_command("schedule", "disable", str(schedule.pk), stdout=StringIO())
    assert not PeriodicTask.objects.get(pk=schedule.periodic_task_id).enabled
    with pytest.raises(CommandError, match="timezone"):
        call_command("schedule", "update", str(schedule.pk), "--timezone", "Moon/Base")
    with pytest.raises(CommandError, match="no schedule 999"):
        call_command("schedule", "run", "999")
    call_command("schedule", "delete", str(schedule.pk), stdout=StringIO())
    assert (
        not Schedule.objects.exists()
        and not PeriodicTask.objects.filter(name=f"schedule-{schedule.pk}").exists()
    )
