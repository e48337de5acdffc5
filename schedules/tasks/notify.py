"""Celery task: deliver one Notification row, retried with backoff.

A failing target never fails anything else: the task records what each
target said on the row, retries only the targets that failed (by position:
the message carries ids only, never a URL), and after
BACKUP_NOTIFY_ATTEMPTS gives up with the row failed and the reason kept."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.conf import settings

from schedules.notifications import attempt_delivery

logger = logging.getLogger(__name__)


def backoff_seconds(attempts_made: int) -> int:
    """Seconds before the next try: BACKUP_NOTIFY_RETRY_SECONDS, doubled
    after each failed attempt (30, 60, 120, ... by default)."""
    return int(settings.BACKUP_NOTIFY_RETRY_SECONDS) * 2 ** max(attempts_made - 1, 0)


@shared_task(bind=True, name="schedules.send_notification", max_retries=None)
def send_notification(self: Task, notification_id: int, only: list[int] | None = None) -> dict:
    try:
        attempt = attempt_delivery(int(notification_id), only=only)
    except Exception as exc:
        # A bug or a lost database: logged by type (the text could quote a
        # row), and not retried blindly; the row stays pending for a resend.
        logger.error("notification %s: delivery crashed: %s", notification_id, type(exc).__name__)
        return {"notification_id": notification_id, "state": "crashed"}
    summary: dict[str, Any] = attempt.summary()
    if attempt.retry and attempt.notification is not None:
        countdown = backoff_seconds(attempt.notification.attempts)
        # No exc=: Celery would log its text; the row already holds the
        # scrubbed reason.
        raise self.retry(
            args=[notification_id], kwargs={"only": attempt.retry}, countdown=countdown
        )
    return summary
