"""`backup drill <backup_id>` and `backup drill --app <app_id>` (the app's
latest snapshot, drills.selectors.latest_snapshot): a drill run in the
command's own process."""

from __future__ import annotations

import json
from typing import Any, TextIO

from django.core.management.base import CommandError

from drills import selectors
from drills.models import Drill
from drills.services.requests import request_drill
from drills.services.run import run_drill
from engine.progress import ProgressCallback
from snapshots.models import Snapshot
from snapshots.selectors import NotFound

SKIPPED_EXIT = 3  # not failed, not proven either: scripts can tell


def drill_command(
    backup_id: str | None, out: TextIO, progress: ProgressCallback, app_id: str | None = None
) -> None:
    if app_id is not None:
        try:
            snapshot = selectors.get_latest_snapshot(app_id)
        except NotFound as exc:
            raise CommandError(str(exc)) from None
        backup_id = snapshot.backup_id
    else:
        snapshot = Snapshot.objects.filter(backup_id=backup_id).first()
        if snapshot is None:
            raise CommandError(f"no snapshot {backup_id!r}")
    drill = run_drill(str(request_drill(snapshot).pk), on_progress=progress)
    out.write(json.dumps(_report(drill), indent=2) + "\n")
    if drill.outcome == Drill.Outcome.FAILED:
        raise CommandError(f"drill of {backup_id} failed: {drill.reason}")
    if drill.outcome == Drill.Outcome.SKIPPED:
        raise CommandError(f"drill of {backup_id} skipped: {drill.reason}", returncode=SKIPPED_EXIT)


def _report(drill: Drill) -> dict[str, Any]:
    return {**(selectors.summary(drill) or {}), "databases": drill.databases}
