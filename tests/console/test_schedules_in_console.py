"""Schedules, retention and notification targets in the admin, in the
product's terms: the retention preview (what is kept and removed, and why;
rules tried before saving; nothing deleted), the schedule form's words
(weekday names, locations, kinds, an hourly schedule through the service),
and the raw django-celery-beat/results tables kept out of a non-superuser's
index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from schedules.models import Schedule
from snapshots.models import Snapshot
from tests.schedules.retention_helpers import files_of, make_stored

pytestmark = pytest.mark.django_db
APP = "console_keep"


@pytest.fixture(autouse=True)
def backup_root(settings: Any, tmp_path: Path) -> Path:
    settings.BACKUP_ROOT = tmp_path / "backups"
    return settings.BACKUP_ROOT


def rows(page: str, table: str) -> str:
    """The body of table TABLE in PAGE (the page's text between its tags)."""
    start = page.index(f'id="{table}"')
    return page[start : page.index("</table>", start)]


def test_retention_preview_shows_what_stays_what_goes_and_why(admin_client: Client) -> None:
    schedule = Schedule.objects.create(app_id=APP, keep_last=2)
    snaps = [make_stored(APP, days) for days in (0.1, 1, 2, 3)]
    url = f"/admin/console/apps/{APP}/retention/"

    page = admin_client.get(url).content.decode()
    removed, kept = rows(page, "remove"), rows(page, "keep")
    assert all(s.backup_id in kept for s in snaps[:2]) and all(
        s.backup_id in removed for s in snaps[2:]
    )
    assert f"kept by no rule of schedule {schedule.pk}" in removed and "keep_last 2" in kept
    assert "would keep <strong>2</strong> snapshots and remove\n    <strong>2</strong>" in page

    # Other rules tried in place of the schedule's: a preview, nothing saved or deleted.
    tried = admin_client.get(url, {"try": "1", "schedule": schedule.pk, "keep_last": "3"})
    page = tried.content.decode()
    assert "With the rules tried below" in page and f"schedule {schedule.pk} (as tried)" in page
    assert snaps[2].backup_id in rows(page, "keep") and snaps[3].backup_id in rows(page, "remove")
    assert Schedule.objects.get().keep_last == 2
    assert Snapshot.objects.count() == 4 and all(p.exists() for s in snaps for p in files_of(s))

    # Bad input is a form error, and the page still shows the saved decision.
    bad = admin_client.get(url, {"try": "1", "keep_last": "-1"}).content.decode()
    assert "Ensure this value is greater than or equal to 0" in bad
    assert "with the schedules&#x27; rules as saved" in bad or "rules as saved" in bad
    assert admin_client.get("/admin/console/apps/nobody_here/retention/").status_code == 404


def test_app_page_and_schedule_page_link_to_the_preview(admin_client: Client) -> None:
    schedule = Schedule.objects.create(app_id=APP, keep_last=1, storage_location="local")
    make_stored(APP, 0.1), make_stored(APP, 1)
    app_page = admin_client.get(f"/admin/console/apps/{APP}/").content.decode()
    assert f'href="/admin/console/apps/{APP}/retention/" id="retention-link"' in app_page
    change = admin_client.get(f"/admin/schedules/schedule/{schedule.pk}/change/").content.decode()
    assert "1 kept, 1 would be removed" in change
    assert f'/admin/console/apps/{APP}/retention/?schedule={schedule.pk}"' in change
    # In the operator's words: weekday names, the location described, the kinds.
    assert '<option value="2">Wednesday</option>' in change
    assert ">local: this host&#x27;s disk only</option>" in change
    kinds = change.split('name="backup_type"')[1].split("</select>")[0]
    assert ">incremental (what changed since the chain&#x27;s last backup)</option>" in kinds
    assert (
        '<option value="pause">pause</option>' in change and "the app&#x27;s own policy" in change
    )
    assert "the deployment&#x27;s default" in change and "restore drill of the latest" in change
    for legend in ("When", "Retention (empty: the rule is not used)", "Notification targets"):
        assert legend in change, legend
    tried = admin_client.get(f"/admin/console/apps/{APP}/retention/?schedule={schedule.pk}")
    assert 'name="keep_last" value="1"' in tried.content.decode()  # starts from its rules


@pytest.mark.docker
def test_an_hourly_schedule_through_the_admin_form(admin_client: Client, host_app: Any) -> None:
    form = {
        "app_id": host_app.project, "enabled": "on", "frequency": "hourly", "time": "00:15",
        "timezone": "Asia/Kolkata", "jitter_seconds": "0", "backup_type": "full",
        "storage_location": "local", "keep_last": "24", "new_targets": "json://127.0.0.1:9/hook",
    }  # fmt: skip
    response = admin_client.post("/admin/schedules/schedule/add/", form)
    assert response.status_code == 302, response.content.decode()[-3000:]
    schedule = Schedule.objects.get()
    assert (schedule.periodic_task.crontab.minute, schedule.periodic_task.crontab.hour) == (
        "15",
        "*",
    )
    listing = admin_client.get("/admin/schedules/schedule/").content.decode()
    assert "hourly at :15 Asia/Kolkata" in listing and str(schedule).endswith(
        "hourly :15 Asia/Kolkata"
    )
    assert schedule.notification_targets_encrypted and "json://" not in listing


def test_celery_tables_are_not_in_a_staff_users_index() -> None:
    """A staff user who may see everything of ours and theirs still gets no
    raw beat/results tables in the index or the sidebar; a superuser's
    stock index (?apps=1) is where the results live."""
    staff = User.objects.create_user("operator", password="pw-operator-1", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client = Client()
    client.force_login(staff)
    for url in ("/admin/", "/admin/schedules/schedule/"):
        page = client.get(url).content.decode()
        for raw in ("django_celery_beat", "django_celery_results", "Solar", "Crontab"):
            assert raw not in page, (url, raw)
    assert client.get("/admin/django_celery_results/taskresult/").status_code == 403
    root = User.objects.create_superuser("root", password="pw-root-1")
    client.force_login(root)
    assert "django_celery_results" in client.get("/admin/?apps=1").content.decode()
