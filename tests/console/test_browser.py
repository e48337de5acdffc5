"""The console in a real browser: Debian's chromium driven by PyPI playwright
(nothing downloaded), the web process Django's live server, a real Celery
worker, a real Compose-like stack (MariaDB + app) on the Docker engine.

Log in, back an app up from the console and watch the run complete, see it
on the dashboard, restore it after the confirmation (typing the app id),
see a restore from a damaged archive shown as a failure that left the
app as it was, and a backup whose database dump fails (the root password
changed inside MariaDB) shown as failed on its run page and the dashboard.
Screenshots go to var/test-artifacts/console/."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.services import refresh_inventory
from tests.conftest import REPO_ROOT

# Playwright's sync API runs an event loop in this thread; the test's own
# ORM calls are plain synchronous code all the same.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "var" / "test-artifacts" / "console"
PASSWORD = "console-test-password-1"  # a throwaway superuser of the test database
RUN_TIMEOUT_MS = 300_000

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.celery]


@pytest.fixture
def browser_page() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing (scripts/ensure_tools.sh installs Debian's chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        # --no-sandbox: the tests run as root, where chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()
    _wait_for_server_connections_to_close()


def _wait_for_server_connections_to_close(timeout: float = 5) -> None:
    """The live server's threads keep database connections of their own
    (its session-scoped thread closes its one only when the session ends,
    after pytest-django tried to drop the test database). Give them TIMEOUT
    to close, then end what is left: sessions on this run's own test
    database, which nothing uses once the browser is closed."""
    from django.db import connection

    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(f"SELECT count(*) {others}")
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.2)
        cursor.execute(f"SELECT pg_terminate_backend(pid) {others}")


def shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def wait_for_end(page: Any) -> str:
    """The run page's outcome once the run ended (the poll reloads the page then)."""
    page.locator('#run[data-terminal="1"]').wait_for(timeout=RUN_TIMEOUT_MS)
    return page.locator("#run-state").inner_text()


def marker(stack: Any) -> str:
    container = stack.container("wordpress")
    return container.exec_run(["cat", "/var/www/html/console-marker.txt"]).output.decode()


def write_marker(stack: Any, text: str) -> None:
    container = stack.container("wordpress")
    result = container.exec_run(["sh", "-c", f"echo {text} > /var/www/html/console-marker.txt"])
    assert result.exit_code == 0, result.output


def rotate_root_password(stack: Any, password: str) -> None:
    """Give MariaDB's root users PASSWORD, behind the container's back."""
    container = stack.container("mariadb")
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    sql = (
        f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{password}'; "
        f"ALTER USER IF EXISTS 'root'@'%' IDENTIFIED BY '{password}'; FLUSH PRIVILEGES;"
    )
    result = container.exec_run(
        ["mariadb", "-uroot", "-e", sql], environment={"MYSQL_PWD": env["MYSQL_ROOT_PASSWORD"]}
    )
    assert result.exit_code == 0, result.output


# The database first: the session's live server then stops (closing its
# connection) before the test database is dropped.
def test_console_backup_restore_and_a_failure_in_a_real_browser(
    transactional_db: None, celery_worker: Any, celery_queue: str, live_server: Any,
    browser_page: Any, wordpress: Any, settings: Any,
) -> None:  # fmt: skip
    from django.contrib.auth.models import User

    from snapshots.models import Run, Snapshot

    settings.BACKUP_TASK_QUEUE = celery_queue
    page = browser_page
    app_id = wordpress.project
    base = str(live_server.url)
    User.objects.create_superuser("console", password=PASSWORD)
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "status.json" in r.url else None)

    # Log in: the admin's start page is the dashboard.
    page.goto(f"{base}/admin/")
    page.fill("#id_username", "console")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.locator("#app-table").wait_for()

    # A new operator: the app is on the host with no backup, and offered one.
    write_marker(wordpress, "before")
    # The worker's report of its host, as at its start (the stack is newer than the
    # worker's first report): back up now routes by the stored inventory.
    refresh_inventory()
    page.reload()  # the dashboard reads the stored inventory, never Docker
    page.locator(f'#unprotected-apps li[data-app="{app_id}"] a:has-text("Back up now")').click()
    host = settings.BACKUP_HOST_ID
    assert page.url.endswith(f"/admin/console/apps/{app_id}/backup/?host_id={host}"), page.url

    # Back up now: full or incremental (the first of a chain is full anyway); full runs.
    kinds = page.locator("#id_backup_type option").all_inner_texts()
    assert [kind.split()[0] for kind in kinds] == ["full", "incremental"], kinds
    page.select_option("#id_backup_type", "full")
    page.select_option("#id_storage_location", "local")
    page.click("#backup-now input[type=submit]")
    assert wait_for_end(page) == "completed", page.content()
    assert polls, "the run page never polled its status"
    assert not page.locator("#run-error").is_visible()  # no empty error box on a success
    shot(page, "backup-run-completed")
    snapshot = Snapshot.objects.get(app_id=app_id)
    assert snapshot.status == "completed" and snapshot.backup_id in page.content()

    # The dashboard shows the app with its real backup.
    page.goto(f"{base}/admin/")
    row = page.locator(f'tr[data-app="{app_id}"]')
    assert "completed" in row.inner_text() and "just now" in row.inner_text()
    assert "level-warning" in row.get_attribute("class")  # not verified yet
    shot(page, "dashboard")

    # Deep verify (a task on the worker), then the dashboard calls the app fine.
    page.goto(f"{base}/admin/console/apps/{app_id}/")
    page.click(f'tr[data-backup="{snapshot.backup_id}"] input[value="Deep verify"]')
    assert wait_for_end(page) == "completed", page.content()
    assert Run.objects.get(operation="verify").result["valid"] is True
    page.goto(f"{base}/admin/")
    row = page.locator(f'tr[data-app="{app_id}"]')
    assert "valid (deep)" in row.inner_text() and "level-ok" in row.get_attribute("class")

    # Restore: the confirmation names what is replaced and wants the app id.
    write_marker(wordpress, "after")
    page.goto(f"{base}/admin/console/apps/{app_id}/")
    page.click(f'tr[data-backup="{snapshot.backup_id}"] a:has-text("Restore")')
    summary = page.locator("#restore-summary").inner_text()
    assert f"{app_id}_wordpress" in summary and f"{app_id}_mysql_data" in summary, summary
    assert "wordpress" in summary
    safety = page.locator("#safety-note").inner_text()
    assert "safety backup of the app's current data is taken first" in safety, safety
    assert page.locator("#id_backup_before_restore").is_checked()
    shot(page, "restore-confirmation")
    page.fill("#id_confirm_app_id", app_id + "x")
    page.click("#restore-form input[type=submit]")
    # The form comes back with the error (waited for: the click returns
    # before the new page is in, and reading it then gives nothing).
    refused = page.locator("#restore-form .errorlist").inner_text()
    assert "type the app id exactly" in refused, refused
    assert not Run.objects.filter(operation="restore").exists()
    page.fill("#id_confirm_app_id", app_id)
    page.click("#restore-form input[type=submit]")
    assert wait_for_end(page) == "completed", page.content()
    shot(page, "restore-run-completed")
    assert marker(wordpress).strip() == "before"
    # What the page promised: a safety backup of the data it replaced.
    restore_run = Run.objects.get(operation="restore")
    safety_id = restore_run.result["safety_backup_id"]
    assert Snapshot.objects.get(backup_id=safety_id).purpose == "pre_restore"
    assert safety_id in page.content()

    # A restore from a damaged archive fails, is shown as a failure, and the
    # app keeps its data.
    write_marker(wordpress, "kept")
    archive = Path(settings.BACKUP_ROOT) / snapshot.storage_key
    with archive.open("r+b") as damaged:
        damaged.seek(archive.stat().st_size // 2)
        damaged.write(b"\0" * 64)
    page.goto(f"{base}/admin/console/snapshots/{snapshot.backup_id}/restore/")
    page.fill("#id_confirm_app_id", app_id)
    page.click("#restore-form input[type=submit]")
    assert wait_for_end(page) == "failed", page.content()
    box = page.locator("#run")
    assert "danger" in box.get_attribute("class") and page.locator("#run-error").is_visible()
    shot(page, "restore-run-failed")
    assert marker(wordpress).strip() == "kept"

    # A backup that really fails: the database's root password was changed
    # inside MariaDB, so the credentials in the container's environment no
    # longer log in and the dump fails. The run page and the dashboard say so.
    rotate_root_password(wordpress, "rotated-Secret-77")
    page.goto(f"{base}/admin/console/apps/{app_id}/backup/")
    page.click("#backup-now input[type=submit]")
    assert wait_for_end(page) == "failed", page.content()
    assert "danger" in page.locator("#run").get_attribute("class")
    error = page.locator("#run-error").inner_text()
    assert "Access denied" in error and "rotated-Secret-77" not in page.content(), error
    shot(page, "backup-run-failed")
    failed = Snapshot.objects.filter(app_id=app_id, purpose="manual").latest("created_at")
    assert failed.status == "failed"
    page.goto(f"{base}/admin/")
    row = page.locator(f'tr[data-app="{app_id}"]')
    assert "failed" in row.inner_text() and "level-danger" in row.get_attribute("class")
    assert "last backup failed" in row.inner_text()
    shot(page, "dashboard-backup-failed")

    # The app's page: its size and duration charts, drawn as SVG by the server.
    page.goto(f"{base}/admin/console/apps/{app_id}/")
    assert page.locator("svg.chart").count() == 2
    shot(page, "app-charts")

    # The snapshot list's size column is on screen at 1400 px.
    page.goto(f"{base}/admin/snapshots/snapshot/")
    # On screen: inside the window and not scrolled away inside the results box.
    size = page.locator("th.column-size").bounding_box()
    results = page.locator("#changelist .results").bounding_box()
    assert size is not None and results is not None
    assert size["x"] + size["width"] <= min(1400, results["x"] + results["width"]), (size, results)
    overflow = page.evaluate(
        "() => { const r = document.querySelector('#changelist .results');"
        " return r.scrollWidth - r.clientWidth; }"
    )
    assert overflow <= 0, f"the snapshot list scrolls sideways by {overflow} px at 1400 px"
    shot(page, "snapshot-list-1400px")
