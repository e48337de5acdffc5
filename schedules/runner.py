"""A firing from beat's message to the backup's end.

fire(schedule_id): which scheduled time the message stands for (the latest
due time at or before now: after downtime that is one catch-up run, not one
per missed day), then the unique ScheduleFiring row (a second message for
the same time, a second beat, or a redelivery fails to insert it and is
dropped). start(firing_id): waits (re-queued with a countdown, not a
sleep: a busy app must not hold a worker of the shared queue for half an
hour) while the app is busy, up to BACKUP_SCHEDULE_BUSY_WAIT_SECONDS, then
is skipped; otherwise queues the backup (purpose "scheduled") to the app's
host queue with settle(firing_id) linked to its end. settle(): the firing
takes the snapshot's end state, retention is queued, and who should hear
of it is told. The missed-backup check also settles firings whose link
never came (a worker killed mid-backup, a run finished by recovery)."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from celery import signature
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from backup_project.celery import app as celery_app
from engine.errors import AppNotFound, EngineError
from fleet.routing import route_app, route_app_or_bound, route_bound
from schedules.models import Schedule, ScheduleFiring
from schedules.timing import Timing, previous_due
from snapshots.locks import app_is_locked, lock_host
from snapshots.models import Run, Snapshot
from snapshots.services.backup import request_backup
from snapshots.services.snapshots import BACKUP_TASK, task_queue
from snapshots.storage_locations import UnknownStorageLocation

logger = logging.getLogger(__name__)

START_TASK = "schedules.start_firing"
SETTLE_TASK = "schedules.settle_firing"
RETENTION_TASK = "schedules.apply_retention"
SHARED_QUEUE = "default"
_ACTIVE = (Run.State.PENDING, Run.State.RUNNING)


def notify(event: str, schedule: Schedule, title: str, body: str) -> None:
    """Tell SCHEDULE's (or its app's) targets; never raises: a notifier
    that fails, or is not installed, never fails a backup."""
    try:
        from schedules.notifications import notify as send
    except ImportError:
        logger.warning("notifications are not available; %s for %s not sent", event, schedule.pk)
        return
    try:
        send(event, app_id=schedule.app_id, title=title, body=body, schedule_id=schedule.pk)
    except Exception as exc:  # notify() promises not to raise; belt and braces
        logger.error("notify %s for schedule %s failed: %s", event, schedule.pk, type(exc).__name__)


def owed_due(schedule: Schedule, now: datetime) -> datetime | None:
    """The scheduled time a firing at NOW stands for, or None when nothing
    is owed: a time before the schedule was last saved (a new schedule, a
    changed time, an enable) belongs to a timing it no longer has."""
    due = previous_due(Timing.of(schedule), now)
    if due is None or due < schedule.updated_at.replace(microsecond=0) - timedelta(seconds=1):
        return None
    return due


def fire(schedule_id: int) -> ScheduleFiring | None:
    """Beat's message: the firing it stands for, started (or None: dropped)."""
    schedule = Schedule.objects.filter(pk=schedule_id).first()
    if schedule is None or not schedule.enabled:
        logger.info("schedule %s is gone or disabled; firing dropped", schedule_id)
        return None
    now = timezone.now()
    due = owed_due(schedule, now)
    if due is None:
        # A monthly day 29-31 projects as cron days 28-31: the other days end here.
        logger.info("schedule %s: nothing due at %s; firing dropped", schedule_id, now)
        return None
    try:
        with transaction.atomic():
            firing = ScheduleFiring.objects.create(schedule=schedule, scheduled_for=due)
    except IntegrityError:
        logger.info("schedule %s: %s already fired; duplicate dropped", schedule_id, due)
        return None
    late = (now - due).total_seconds()
    logger.info("schedule %s fires for %s (%.1f s after it)", schedule_id, due, late)
    if schedule.jitter_seconds:
        delay = random.randint(0, schedule.jitter_seconds)  # noqa: S311 (spreading, not secrecy)
        _send_start(firing, countdown=delay)
        return firing
    return start(firing.pk)


def _send_start(firing: ScheduleFiring, countdown: float) -> None:
    celery_app.send_task(START_TASK, args=[firing.pk], queue=SHARED_QUEUE, countdown=countdown)


def app_busy(app_id: str, host_id: str | None = None) -> bool:
    """A backup or restore holds the lease of APP_ID on HOST_ID (this host
    when not given), or one is queued for it there; the same app id on
    another host is another app. Verifies and off-site uploads read only a
    stored archive: they do not make a scheduled backup wait."""
    host = lock_host(host_id)
    active = Run.objects.filter(
        Q(host_id=host) | Q(host_id=""),  # "": a row from before runs named their host
        app_id=app_id,
        state__in=_ACTIVE,
        operation__in=[Run.Operation.BACKUP, Run.Operation.RESTORE],
    )
    return app_is_locked(app_id, host) or active.exists()


def schedule_host(schedule: Schedule) -> str:
    """The online host SCHEDULE's backup runs on: its host_id's (an app no
    longer in that host's inventory goes there still, as uninstalled apps
    do); for a schedule naming none, the app's one host by the stored
    inventory, or where its last snapshot was made for an app in none.
    EngineError (AppOnManyHosts, HostOffline, ...) when there is none: the
    firing is refused now and told, not queued for ever."""
    if schedule.host_id:
        try:
            return route_app(schedule.app_id, schedule.host_id)
        except AppNotFound:
            return route_bound(schedule.host_id)
    return route_app_or_bound(schedule.app_id, last_host(schedule.app_id))


def _poll_seconds(wait: int) -> float:
    return min(30.0, max(1.0, wait / 10))


def start(firing_id: int) -> ScheduleFiring | None:
    """Start FIRING's backup, or wait for a busy app, or skip it."""
    firing = ScheduleFiring.objects.select_related("schedule").filter(pk=firing_id).first()
    if firing is None or firing.state != ScheduleFiring.State.PENDING:
        return firing
    schedule = firing.schedule
    if not schedule.enabled and not firing.manual:
        return _end(firing, ScheduleFiring.State.SKIPPED, "the schedule was disabled")
    if schedule.action == Schedule.Action.DRILL:  # reads an archive: a busy app does not matter
        from drills.services.scheduled import start_scheduled_drill

        return start_scheduled_drill(firing, schedule)
    wait = settings.BACKUP_SCHEDULE_BUSY_WAIT_SECONDS
    with transaction.atomic():
        # The app's schedules, locked: two firings of one app (a daily and
        # a weekly at 02:00) decide one after the other (PostgreSQL; SQLite
        # has one writer anyway).
        list(Schedule.objects.select_for_update().filter(app_id=schedule.app_id).values("pk"))
        try:
            host_id = schedule_host(schedule)
        except EngineError as exc:
            return _refused(firing, schedule, exc)
        busy = app_busy(schedule.app_id, host_id)
        if not busy:
            return _request(firing, schedule, host_id)
    waited = (timezone.now() - firing.created_at).total_seconds()
    if waited < wait:
        countdown = min(_poll_seconds(wait), wait - waited)
        logger.info("schedule %s: app %s busy; checking again in %.0f s", schedule.pk,
                    schedule.app_id, countdown)  # fmt: skip
        _send_start(firing, countdown=countdown)
        return firing
    reason = f"the app was busy (another backup or a restore) for {waited:.0f} s; skipped"
    _end(firing, ScheduleFiring.State.SKIPPED, reason)
    when = f"{firing.scheduled_for:%Y-%m-%d %H:%M} UTC"
    notify("backup_skipped", schedule, f"Scheduled backup of {schedule.app_id} skipped",
           f"The backup due {when} was skipped: {reason}.")  # fmt: skip
    return firing


def _refused(firing: ScheduleFiring, schedule: Schedule, exc: Exception) -> ScheduleFiring:
    _end(firing, ScheduleFiring.State.FAILED, f"the backup could not be requested: {exc}")
    when = f"{firing.scheduled_for:%Y-%m-%d %H:%M} UTC"
    notify("backup_failed", schedule, f"Scheduled backup of {schedule.app_id} failed",
           f"The backup due {when} was refused: {exc}")  # fmt: skip
    return firing


def _request(firing: ScheduleFiring, schedule: Schedule, host_id: str) -> ScheduleFiring:
    """Inside the caller's transaction: the run and snapshot rows on HOST_ID
    (schedule_host), the firing marked running, and the backup task sent
    once they commit."""
    try:
        with transaction.atomic():
            run = request_backup(
                schedule.app_id, purpose=Snapshot.Purpose.SCHEDULED,
                consistency=schedule.consistency or None, encrypt=schedule.encrypt,
                storage_location=schedule.storage_location, backup_type=schedule.backup_type,
                host_id=host_id,
            )  # fmt: skip
    except (EngineError, UnknownStorageLocation) as exc:
        return _refused(firing, schedule, exc)
    firing.state = ScheduleFiring.State.RUNNING
    firing.run_id = run.pk
    firing.snapshot = run.snapshot
    firing.started_at = timezone.now()
    firing.save(update_fields=["state", "run_id", "snapshot", "started_at"])
    transaction.on_commit(lambda: _send_backup(firing, run))
    return firing


def last_host(app_id: str) -> str:
    """The host that made APP_ID's latest snapshot; this host for none."""
    last = Snapshot.objects.filter(app_id=app_id).order_by("-created_at").first()
    return last.host_id if last is not None and last.host_id else settings.BACKUP_HOST_ID


def _send_backup(firing: ScheduleFiring, run: Run) -> None:
    """The backup task, to the app's host queue, settle() linked to its end."""
    settle_when_done = signature(SETTLE_TASK, args=[firing.pk], queue=SHARED_QUEUE, immutable=True)
    try:
        celery_app.send_task(
            BACKUP_TASK, args=[str(run.pk)], task_id=str(run.pk), queue=task_queue(run.host_id),
            link=settle_when_done,
        )  # fmt: skip
    except Exception as exc:  # kombu raises many types for "no broker"
        reason = f"could not queue the backup ({type(exc).__name__}); is the broker running?"
        logger.error("schedule firing %s: %s", firing.pk, reason)
        Run.objects.filter(pk=run.pk).update(state=Run.State.FAILED, error=reason)
        Snapshot.objects.filter(pk=run.snapshot_id).update(
            status=Snapshot.Status.FAILED, error=reason
        )
        settle(firing.pk)


def _end(firing: ScheduleFiring, state: str, error: str = "") -> ScheduleFiring:
    firing.state = state
    firing.error = error
    firing.finished_at = timezone.now()
    firing.save(update_fields=["state", "error", "finished_at"])
    logger.info("schedule firing %s %s %s", firing.pk, state, error)
    return firing


def settle(firing_id: int) -> str | None:
    """Give a running firing its snapshot's end state, once (a conditional
    update: the link and the sweep may both call this). Then retention is
    queued after a completed backup, and the targets are told. Returns the
    new state, or None when nothing changed (still running, or settled)."""
    firing = ScheduleFiring.objects.select_related("schedule", "snapshot").get(pk=firing_id)
    snapshot = firing.snapshot
    if snapshot is None:
        state, error = ScheduleFiring.State.FAILED, "its snapshot was deleted before it ended"
    elif snapshot.status == Snapshot.Status.COMPLETED:
        state, error = ScheduleFiring.State.COMPLETED, ""
    elif snapshot.status == Snapshot.Status.FAILED:
        state, error = ScheduleFiring.State.FAILED, snapshot.error
    else:
        return None
    now = timezone.now()
    changed = ScheduleFiring.objects.filter(
        pk=firing.pk, state=ScheduleFiring.State.RUNNING
    ).update(state=state, error=error, finished_at=now)
    if not changed:
        return None
    schedule = firing.schedule
    when = f"{firing.scheduled_for:%Y-%m-%d %H:%M} UTC"
    if state == ScheduleFiring.State.COMPLETED and snapshot is not None:
        _queue_retention(schedule, snapshot.host_id)
        notify("backup_succeeded", schedule, f"Scheduled backup of {schedule.app_id} completed",
               f"Backup {snapshot.backup_id} (due {when}) completed.")  # fmt: skip
    else:
        notify("backup_failed", schedule, f"Scheduled backup of {schedule.app_id} failed",
               f"The backup due {when} failed: {error}")  # fmt: skip
    return state


def _queue_retention(schedule: Schedule, made_on: str) -> None:
    """Retention of SCHEDULE's app on the host that just backed it up
    (MADE_ON): a local archive is deleted there. A schedule naming its host
    decides over that host's snapshots only; one naming none, over the app
    id's on every host, as before the fleet."""
    host = made_on or last_host(schedule.app_id)
    args = [schedule.app_id, schedule.host_id or None]
    try:
        celery_app.send_task(RETENTION_TASK, args=args, queue=task_queue(host))
    except Exception as exc:  # the next daily run applies it anyway
        logger.error("could not queue retention of %s: %s", schedule.app_id, type(exc).__name__)


def settle_open_firings() -> int:
    """Settle every running firing whose snapshot has ended (or gone)."""
    ended = (
        ScheduleFiring.objects.filter(state=ScheduleFiring.State.RUNNING)
        .exclude(snapshot__status__in=(Snapshot.Status.PENDING, Snapshot.Status.RUNNING))
        .exclude(schedule__action=Schedule.Action.DRILL)  # a drill settles its own firing
    )
    return sum(1 for pk in ended.values_list("pk", flat=True) if settle(pk))
