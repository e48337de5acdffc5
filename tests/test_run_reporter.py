"""The run row as the run reporter writes it: what the admin's "Bytes done"
and the API's run show (snapshots.run_reporter)."""

from __future__ import annotations

import pytest

from engine.progress import Progress
from snapshots.models import Run
from snapshots.run_reporter import run_reporter

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_phase_without_figures_keeps_the_bytes_of_the_phase_before() -> None:
    """A restore reports "restoring" with bytes, then "stopping" and
    "starting" with none: the row ended on "Bytes done: 0" with no total."""
    run = Run.objects.create(operation=Run.Operation.RESTORE, app_id="app1", state="running")
    with run_reporter(run) as progress:
        progress(Progress("restoring", 900, 1000))
        progress(Progress("restoring", 1000, 1000))
        progress(Progress("stopping"))
        progress(Progress("starting"))
    run.refresh_from_db()
    assert (run.phase, run.bytes_done, run.bytes_total) == ("starting", 1000, 1000)


def test_a_phase_with_figures_of_its_own_replaces_them() -> None:
    run = Run.objects.create(operation=Run.Operation.BACKUP, app_id="app1", state="running")
    with run_reporter(run) as progress:
        progress(Progress("dumping", 5000, None))
        progress(Progress("archiving", 10, 400))
    run.refresh_from_db()
    assert (run.phase, run.bytes_done, run.bytes_total) == ("archiving", 10, 400)
