"""A failed drill told to the targets a failed backup would reach."""

from __future__ import annotations

import logging

from drills.models import Drill

logger = logging.getLogger(__name__)

DRILL_FAILED = "drill_failed"


def drill_failed(drill: Drill) -> object | None:
    """Never raises: telling someone must not fail anything."""
    try:
        from schedules.notifications import notify

        return notify(
            DRILL_FAILED,
            app_id=drill.app_id,
            title=f"Restore drill failed: {drill.app_id} {drill.backup_id}",
            body=(
                f"The restore drill of backup {drill.backup_id} of app {drill.app_id} failed: "
                f"{drill.reason[:1500]}\nThe app itself was not touched. Do not count on this "
                f"backup for a restore; check the newer ones. Drill: {drill.pk}."
            ),
            schedule_id=drill.schedule_id,
        )
    except Exception as exc:
        logger.error("could not tell of a failed drill: %s", type(exc).__name__)
        return None
