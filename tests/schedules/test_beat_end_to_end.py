"""Scheduled backups as the product runs them: `scripts/run.sh` (gunicorn, a
Celery worker on default + this host's queue, and one beat with the
DatabaseScheduler), driven over real HTTP, on both configurations
(embedded SQLite + filesystem broker; PostgreSQL + Redis).

A schedule due every minute ("* * * * *") makes completed scheduled
snapshots of a real small app; a disabled one makes none; after the whole
product (beat included) is stopped and started again the schedule still
fires. Firing accuracy (how late the fire task ran after the scheduled
minute) is printed over every firing observed; run with -s to see it."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import REPO_ROOT
from tests.stacks import ComposeStack
from tests.test_served_end_to_end import (
    Served,
    free_port,
    postgres_database,  # noqa: F401 (a fixture)
    user_environment,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.celery]
FIRINGS_SQL = """
import json
from schedules.models import ScheduleFiring
rows = ScheduleFiring.objects.order_by("scheduled_for").values_list(
    "schedule_id", "scheduled_for", "created_at", "state", "snapshot__purpose")
print(json.dumps([[s, f.timestamp(), c.timestamp(), st, p] for s, f, c, st, p in rows]))
"""


class Product:
    """scripts/run.sh on one data directory (and database), startable again."""

    def __init__(self, env: dict[str, str], data_dir: Path, log: Path) -> None:
        self.env, self.data_dir, self.log_path = env, data_dir, log
        self.process: subprocess.Popen[bytes] | None = None
        self.served = Served(f"http://127.0.0.1:{env['PORT']}", env, data_dir)

    def start(self) -> Served:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(REPO_ROOT / "scripts/run.sh")], cwd=REPO_ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._wait_until_healthy()
        if not self.served.api_key:
            self.served.api_key = self.served.manage("apikey", "create", "sched-e2e")
        return self.served

    def _wait_until_healthy(self, timeout: float = 180) -> None:
        """As the served test waits, but a slow answer (a loaded machine) is
        only a reason to ask again."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"run.sh exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                response = requests.get(f"{self.served.base_url}/api/v1/health", timeout=10)
                if response.status_code == 200 and "ready" in self.served.worker_log():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"not healthy in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)  # Ctrl-C, as a user would
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def firings(self) -> list[list[Any]]:
        return json.loads(self.served.manage("shell", "-c", FIRINGS_SQL).splitlines()[-1])

    def beat_log(self) -> str:
        path = self.data_dir / "log" / "beat.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(params=["embedded", "postgres+redis"])
def product(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Product]:
    data_dir = tmp_path / "var"
    env = user_environment(data_dir, free_port())
    if request.param == "postgres+redis":
        env["DATABASE_URL"] = request.getfixturevalue("postgres_database")
        # A Redis database of its own: its worker takes the shared queue
        # "default", which no other test's worker may share.
        env["CELERY_BROKER_URL"] = "redis://127.0.0.1:6379/12"
    product = Product(env, data_dir, tmp_path / "run.log")
    try:
        yield product
    finally:
        product.stop()
        print(f"\n[{request.param}] beat log tail:\n{product.beat_log()[-1500:]}")


def wait_for(predicate: Any, timeout: float, what: str, served: Served) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    log = served.worker_log()[-3000:]
    raise AssertionError(f"{what} not within {timeout}s; worker log:\n{log}")


def completed_scheduled(served: Served, app_id: str) -> list[dict[str, Any]]:
    page = served.call("GET", f"/snapshots?app_id={app_id}&purpose=scheduled&status=completed",
                       200)  # fmt: skip
    return page["snapshots"]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def test_beat_and_worker_make_scheduled_backups_and_survive_a_restart(
    product: Product, host_app: ComposeStack
) -> None:
    app_id = host_app.project
    served = product.start()
    every_minute = {"app_id": app_id, "frequency": "cron", "cron_expression": "* * * * *",
                    "timezone": "Europe/Berlin", "retention_days": 30}  # fmt: skip
    enabled = served.call("POST", "/schedules", 201, json=every_minute)
    disabled = served.call("POST", "/schedules", 201, json=every_minute | {"enabled": False})

    # A beat that is already running picks the new schedule up and fires it.
    # More firings for a finer accuracy figure: SCHEDULE_E2E_FIRINGS=6 (default 1).
    wanted = int(os.environ.get("SCHEDULE_E2E_FIRINGS", "1"))
    wait_for(lambda: len(completed_scheduled(served, app_id)) >= wanted, 90 + 65 * wanted,
             "scheduled snapshots", served)  # fmt: skip
    shown = wait_for(
        lambda: (s := served.call("GET", f"/schedules/{enabled['id']}", 200))["last_result"]
        == "completed" and s, 60, "the firing settled", served,
    )  # fmt: skip
    assert shown["last_run_at"] and shown["next_run_at"]
    before_restart = len(completed_scheduled(served, app_id))

    # Stop everything (web, worker, beat), start again on the same data.
    stopping_at = time.time()
    product.stop()
    served = product.start()
    restarted_at = time.time()
    wait_for(
        lambda: any(f[2] > restarted_at for f in product.firings() if f[0] == enabled["id"]),
        150, "a firing after the restart", served,
    )  # fmt: skip
    wait_for(lambda: len(completed_scheduled(served, app_id)) > before_restart, 120,
             "a scheduled snapshot after the restart", served)  # fmt: skip

    firings = product.firings()
    mine = [f for f in firings if f[0] == enabled["id"]]
    assert not [f for f in firings if f[0] == disabled["id"]], firings
    assert len({f[1] for f in mine}) == len(mine)  # one firing per scheduled minute
    assert all(f[4] in ("scheduled", None) for f in mine)
    # A minute that passed while the product was down is caught up once (one
    # firing, however long it was down); it is late by design, so the
    # accuracy figure is over the firings beat sent on time.
    catch_ups = [f for f in mine if stopping_at <= f[1] <= restarted_at]
    assert len(catch_ups) <= 1, catch_ups
    on_time = [f[2] - f[1] for f in mine if f not in catch_ups]
    print(f"\nfirings: {len(mine)} ({len(catch_ups)} catch-up); seconds late (on time): "
          f"{[round(x, 2) for x in on_time]}; p95 {p95(on_time):.2f} s; catch-up late "
          f"{[round(f[2] - f[1], 1) for f in catch_ups]} s")  # fmt: skip
    assert p95(on_time) < 30, on_time
    log = served.worker_log()
    for sign_of_trouble in ("Traceback", "IntegrityError"):
        assert sign_of_trouble not in log, log[-3000:]
