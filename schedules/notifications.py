"""The notification service: who is told of an event, the Notification row
that says whether they were, and its delivery (queued, or now for a test).

`notify()` is called from failure paths (a backup, retention or verify that
failed, beat's missed-backup check): it never raises and never blocks on a
target. The row holds masked target names only; the URLs are read again
from the schedule or app when the task delivers, so no secret travels in a
task message or sits in the row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from backup_project.celery import app as celery_app
from schedules.models import AppNotificationTargets, Notification, Schedule
from schedules.notify import TargetOutcome, deliver
from schedules.secrets import SecretsUnavailable, decrypt_targets, mask_target

logger = logging.getLogger(__name__)

DELIVERY_TASK = "schedules.send_notification"
SUCCESS_EVENTS = frozenset({Notification.Event.BACKUP_SUCCEEDED})
# Apprise's notify type of each event: what a receiver shows (a red mark on
# Slack/Discord, "type" in a json:// body). Unlisted events are "info".
EVENT_KINDS: dict[str, str] = {
    Notification.Event.BACKUP_FAILED: "failure",
    Notification.Event.RETENTION_FAILED: "failure",
    Notification.Event.VERIFY_FAILED: "failure",
    Notification.Event.DRILL_FAILED: "failure",
    Notification.Event.BACKUP_SUCCEEDED: "success",
    Notification.Event.BACKUP_SKIPPED: "warning",
    Notification.Event.BACKUP_MISSED: "warning",
}
_MAX_ERROR = 2000


class NoTargets(ValueError):
    """Nobody to tell: neither the schedule nor the app has targets."""


@dataclass
class Targets:
    """The URLs an event goes to, where they came from, and whether that
    owner asked to hear of successes."""

    urls: list[str] = field(default_factory=list)
    notify_on_success: bool = False
    schedule: Schedule | None = None
    source: str = "none"  # "schedule" | "app" | "none"


def resolve_targets(app_id: str, schedule_id: int | None = None) -> Targets:
    """The schedule's own targets, else the app's. SecretsUnavailable when
    the list that applies cannot be decrypted."""
    schedule = Schedule.objects.filter(pk=schedule_id).first() if schedule_id else None
    app_id = schedule.app_id if schedule is not None else app_id
    on_success = bool(schedule and schedule.notify_on_success)
    if schedule is not None and schedule.notification_targets_encrypted:
        urls = decrypt_targets(schedule.notification_targets_encrypted)
        return Targets(urls, on_success, schedule, "schedule")
    own = AppNotificationTargets.objects.filter(app_id=app_id).first()
    if own is not None and own.targets_encrypted:
        # A schedule without a list of its own uses the app's: either may ask
        # for success messages.
        urls = decrypt_targets(own.targets_encrypted)
        return Targets(urls, on_success or own.notify_on_success, schedule, "app")
    return Targets([], on_success, schedule, "none")


def notify(
    event: str, *, app_id: str, title: str, body: str, schedule_id: int | None = None
) -> Notification | None:
    """Record EVENT for APP_ID and queue its delivery after the current
    transaction commits. Returns the row, or None when there is nobody to
    tell (or success events are not wanted). Never raises: telling someone
    must never fail the work that went wrong."""
    try:
        with transaction.atomic():  # a savepoint: a failure here leaves the caller's intact
            row = _record(event, app_id=app_id, title=title, body=body, schedule_id=schedule_id)
    except Exception as exc:
        logger.error(
            "could not record a %s notification for app %s: %s", event, app_id, type(exc).__name__
        )
        return None
    if row is not None and row.state == Notification.State.PENDING:
        pk = row.pk
        transaction.on_commit(lambda: queue_delivery(pk))
    return row


def _record(
    event: str, *, app_id: str, title: str, body: str, schedule_id: int | None
) -> Notification | None:
    if event not in Notification.Event.values:
        logger.error("unknown notification event %r for app %s; not sent", event, app_id)
        return None
    try:
        targets = resolve_targets(app_id, schedule_id)
    except SecretsUnavailable as exc:
        # Nobody can be told, but the operator can still read why here.
        return _create(event, app_id, schedule_id, title, body, [], failed=str(exc))
    if event in SUCCESS_EVENTS and not targets.notify_on_success:
        return None
    if not targets.urls:
        logger.info("no notification targets for app %s: %s not sent", app_id, event)
        return None
    schedule_pk = targets.schedule.pk if targets.schedule else None
    app_id = targets.schedule.app_id if targets.schedule else app_id
    masked = [mask_target(url) for url in targets.urls]
    return _create(event, app_id, schedule_pk, title, body, masked)


def _create(
    event: str,
    app_id: str,
    schedule_id: int | None,
    title: str,
    body: str,
    masked: list[str],
    failed: str = "",
) -> Notification:
    if schedule_id is not None and not Schedule.objects.filter(pk=schedule_id).exists():
        schedule_id = None
    return Notification.objects.create(
        event=event, app_id=app_id[:128], schedule_id=schedule_id, title=title[:255],
        body=body, targets=masked,
        state=Notification.State.FAILED if failed else Notification.State.PENDING,
        error=failed[:_MAX_ERROR],
    )  # fmt: skip


def queue_delivery(notification_id: int, only: list[int] | None = None) -> None:
    """Send the delivery task; a broker that is down fails the row (with
    why), never the caller."""
    try:
        kwargs = {"only": only} if only else {}
        celery_app.send_task(
            DELIVERY_TASK, args=[notification_id], kwargs=kwargs, queue=settings.BACKUP_NOTIFY_QUEUE
        )
    except Exception as exc:  # kombu raises many types for "no broker"
        # The type only: a broker error's text may carry the broker URL.
        reason = f"could not queue the delivery ({type(exc).__name__}); is the broker running?"
        logger.error("notification %s: %s", notification_id, reason)
        Notification.objects.filter(pk=notification_id).update(
            state=Notification.State.FAILED, error=reason
        )


@dataclass
class Attempt:
    """One delivery attempt of a row: its outcomes, and which targets (by
    position) are still to be told if it is retried."""

    notification: Notification | None
    outcomes: list[TargetOutcome]
    retry: list[int]

    def summary(self) -> dict[str, object]:
        row = self.notification
        return {
            "notification_id": row.pk if row else None,
            "state": row.state if row else "gone",
            "attempts": row.attempts if row else 0,
            "targets": [outcome.as_dict() for outcome in self.outcomes],
        }


def attempt_delivery(notification_id: int, only: list[int] | None = None) -> Attempt:
    """Deliver the row now (to the targets at positions ONLY, when the list
    is still the one the row names), and record the attempt: sent when all
    answered, failed after BACKUP_NOTIFY_ATTEMPTS, else pending with the
    targets left to retry."""
    row = Notification.objects.filter(pk=notification_id).first()
    if row is None or row.state != Notification.State.PENDING:
        return Attempt(row, [], [])
    try:
        targets = resolve_targets(row.app_id, row.schedule_id)
    except SecretsUnavailable as exc:
        return Attempt(_finish(row, [], str(exc), final=True), [], [])
    if not targets.urls:
        reason = "the targets were removed before the notification could be delivered"
        return Attempt(_finish(row, [], reason, final=True), [], [])
    masked = [mask_target(url) for url in targets.urls]
    positions = list(range(len(targets.urls)))
    if only and masked == row.targets:
        positions = [i for i in only if 0 <= i < len(targets.urls)] or positions
    outcomes = deliver(
        [targets.urls[i] for i in positions],
        row.title,
        row.body,
        timeout=float(settings.BACKUP_NOTIFY_TIMEOUT_SECONDS),
        kind=EVENT_KINDS.get(row.event, "info"),
    )
    failed = [(i, o) for i, o in zip(positions, outcomes, strict=True) if not o.ok]
    error = "; ".join(f"{o.target}: {o.error}" for _, o in failed)
    final = row.attempts + 1 >= settings.BACKUP_NOTIFY_ATTEMPTS or not failed
    # A URL Apprise cannot use will not get better with time.
    final = final or all(o.status == "invalid" for _, o in failed)
    row.targets = masked
    row = _finish(row, outcomes, error, final=final)
    return Attempt(row, outcomes, [] if final else [i for i, _ in failed])


def _finish(
    row: Notification, outcomes: list[TargetOutcome], error: str, *, final: bool
) -> Notification:
    """Record one attempt on ROW (attempts counted in the database)."""
    sent = bool(outcomes) and not error
    state = (
        Notification.State.SENT
        if sent
        else Notification.State.FAILED
        if final
        else Notification.State.PENDING
    )
    Notification.objects.filter(pk=row.pk).update(
        attempts=F("attempts") + 1, state=state, error=error[:_MAX_ERROR], targets=row.targets,
        sent_at=timezone.now() if sent else None,
    )  # fmt: skip
    row.refresh_from_db()
    told = f"notification {row.pk} ({row.event}, app {row.app_id}), attempt {row.attempts}"
    if sent:
        logger.info("%s: sent to %d target(s)", told, len(outcomes))
    else:
        # Errors are scrubbed (schedules.notify): this line holds no secret.
        level = logging.ERROR if final else logging.WARNING
        then = "giving up" if final else "will retry"
        logger.log(level, "%s failed, %s: %s", told, then, error or "no target answered")
    return row


def send_test(*, schedule_id: int | None = None, app_id: str | None = None) -> Attempt:
    """Send a test message now to the schedule's (or app's) targets and
    return what each said; recorded as a "test" Notification. NoTargets
    when there is nobody to send to; Schedule.DoesNotExist for a bad id."""
    if schedule_id is not None:
        schedule = Schedule.objects.get(pk=schedule_id)
        app_id, about = schedule.app_id, f"schedule {schedule}"
    elif app_id:
        about = f"app {app_id}"
    else:
        raise NoTargets("give a schedule_id or an app_id")
    targets = resolve_targets(app_id, schedule_id)  # SecretsUnavailable propagates: say why
    if not targets.urls:
        # A schedule falls back on its app's list; an app has only its own.
        also = " (nor does its app)" if schedule_id is not None else ""
        raise NoTargets(f"{about} has no notification targets{also}")
    row = _create(
        Notification.Event.TEST, app_id, schedule_id,
        f"Test notification: {about}",
        f"This is a test from the backup service for {about}. If you read this, the target "
        "works; backup, retention and verify failures and missed backups will arrive here.",
        [mask_target(url) for url in targets.urls],
    )  # fmt: skip
    outcomes = deliver(
        targets.urls, row.title, row.body, timeout=float(settings.BACKUP_NOTIFY_TIMEOUT_SECONDS)
    )
    error = "; ".join(f"{o.target}: {o.error}" for o in outcomes if not o.ok)
    return Attempt(_finish(row, outcomes, error, final=True), outcomes, [])


def verify_failed(run: object) -> Notification | None:
    """Tell the app's targets that a verify RUN (a snapshots Run, failed)
    found the archive invalid or could not check it. Never raises."""
    try:
        snapshot = getattr(run, "snapshot", None)
        backup_id = snapshot.backup_id if snapshot is not None else "(deleted snapshot)"
        app_id = str(getattr(run, "app_id", ""))
        kind = "deep" if (getattr(run, "options", None) or {}).get("deep") else "quick"
        error = str(getattr(run, "error", "") or "no reason recorded")[:1000]
        return notify(
            Notification.Event.VERIFY_FAILED,
            app_id=app_id,
            title=f"Verify failed: {app_id} {backup_id}",
            body=(
                f"The {kind} verification of backup {backup_id} of app {app_id} failed: {error}\n"
                "Do not count on this backup for a restore until it verifies; make a new "
                f"backup if it stays invalid. Task: {getattr(run, 'pk', '')}."
            ),
        )
    except Exception as exc:
        logger.error("could not tell of a failed verify: %s", type(exc).__name__)
        return None
