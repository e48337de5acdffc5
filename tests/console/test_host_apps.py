"""The dashboard's list of apps on this Docker host with no backup, run or
schedule yet (what a new operator sees first), on the real engine; and a web
process that cannot reach the engine still shows the dashboard, saying why
the host's apps are missing."""

from __future__ import annotations

import http.server
import threading
import time
from typing import Any

import pytest
from django.test import Client

from console import host_apps
from tests.api.conftest import MakeSnapshot
from tests.s3_servers import free_port

pytestmark = pytest.mark.django_db


def section(page: str) -> str:
    start = page.find('id="unprotected-apps"')
    return page[start : page.index("</div>", start)] if start >= 0 else ""


@pytest.mark.docker
def test_apps_on_the_host_without_a_backup_are_offered_one(
    admin_client: Client, host_app: Any, make_snapshot: MakeSnapshot
) -> None:
    app_id = host_app.project
    first = admin_client.get("/admin/").content.decode()
    listed = section(first)
    # Each of them needs attention (the host may hold other tests' stacks too).
    count = listed.count("<li data-app=")
    assert f'<strong id="problem-count">{count}</strong>' in first and f"{count} app" in first
    assert "<title>Backups at a glance | Backup service</title>" in first
    assert f'<li data-app="{app_id}">' in listed
    assert f'href="/admin/console/apps/{app_id}/backup/"' in listed
    assert f'/admin/schedules/schedule/add/?app_id={app_id}"' in listed

    make_snapshot(app_id=app_id)  # now in the table, so no longer in the list
    page = admin_client.get("/admin/").content.decode()
    assert f'data-app="{app_id}"' not in section(page) and f'data-app="{app_id}"' in page


def test_without_the_engine_the_dashboard_says_why(admin_client: Client, settings) -> None:
    settings.DOCKER_HOST = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    answer = admin_client.get("/admin/")
    page = answer.content.decode()
    assert answer.status_code == 200 and 'id="app-table"' in page
    assert 'id="host-apps-unknown"' in page and "Docker" in page


class _SlowEngine(http.server.BaseHTTPRequestHandler):
    """Answers the client's version check and ping, then takes longer than
    the client waits on the list calls: a Docker engine under heavy load,
    which the real one cannot be made on demand (the one stand-in here)."""

    def do_GET(self) -> None:
        if self.path.endswith("/version") or self.path.endswith("/_ping"):
            body = b'{"ApiVersion": "1.41", "Version": "20.10.24"}'
            if self.path.endswith("/_ping"):
                body = b"OK"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        time.sleep(3)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_slow_engine_is_a_note_not_an_error(
    admin_client: Client, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings.DOCKER_HOST = f"tcp://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setattr(host_apps, "DOCKER_TIMEOUT_SECONDS", 1)
        answer = admin_client.get("/admin/")
    finally:
        server.shutdown()
        server.server_close()
    page = answer.content.decode()
    assert answer.status_code == 200 and 'id="app-table"' in page
    assert "did not answer in time (ReadTimeout)" in page
