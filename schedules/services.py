"""What users (API, admin, CLI) do to schedules: create, update, delete,
enable, disable, run now. Each change saves the Schedule and its beat
projection (schedules/beat.py) in one transaction: a beat never sees a
PeriodicTask for a schedule that is not there, or the other way round."""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from engine.discovery import validate_app_id
from engine.errors import AppNotFound
from engine.quiesce import CONSISTENCY_MODES
from fleet.errors import UnknownHost
from fleet.selectors import locate_app
from schedules import beat
from schedules.models import Schedule, ScheduleFiring
from schedules.timing import InvalidSchedule, Timing, minute_floor, parse_time, validate
from snapshots.services.encryption import encryption_configured
from snapshots.storage_locations import storage_names

logger = logging.getLogger(__name__)

TIMING_FIELDS = ("frequency", "time", "timezone", "weekday", "day_of_month", "cron_expression")
POLICY_FIELDS = (
    "retention_days", "keep_last", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly",
)  # fmt: skip
PLAIN_FIELDS = (
    "name", "enabled", "jitter_seconds", "backup_type", "storage_location", "consistency",
    "encrypt", "notify_on_success", "action", *POLICY_FIELDS,
)  # fmt: skip
EDITABLE = ("app_id", "host_id", *TIMING_FIELDS, *PLAIN_FIELDS, "notification_targets")
MAX_JITTER_SECONDS = 3600


class ScheduleInvalid(ValueError):
    """Bad input; ERRORS maps each field to its message. Nothing was saved."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


class AlreadyFiring(Exception):
    """Run now: this schedule already has a firing for the current minute."""


def _check_app(app_id: object, host_id: object) -> tuple[str, str]:
    """(APP_ID, HOST_ID) if APP_ID is an app in a host's stored inventory
    (on HOST_ID when given; the web process never asks Docker), as the
    backup API checks it: an app known only from old snapshots cannot be
    backed up. An app id on two hosts and no HOST_ID raises AppOnManyHosts
    (the API's 409 listing them); a blank HOST_ID is stored as blank, "the
    app's only host", so the schedule follows an app that moves."""
    if not isinstance(app_id, str):
        raise InvalidSchedule("app_id", "app_id must be a string")
    if host_id is not None and not isinstance(host_id, str):
        raise InvalidSchedule("host_id", "host_id must be a string (or null)")
    try:
        validate_app_id(app_id)
    except AppNotFound as exc:
        raise InvalidSchedule("app_id", str(exc)) from None
    try:
        locate_app(app_id, host_id or None)
    except UnknownHost as exc:
        raise InvalidSchedule("host_id", str(exc)) from None
    except AppNotFound as exc:
        raise InvalidSchedule("app_id", f"{exc}; schedules are for apps on a host") from None
    return app_id, host_id or ""


def _check_plain(values: dict[str, Any]) -> None:
    if "action" in values and values["action"] not in Schedule.Action.values:
        raise InvalidSchedule("action", "action must be backup or drill")
    if "backup_type" in values and values["backup_type"] not in Schedule.BackupType.values:
        raise InvalidSchedule(
            "backup_type",
            f'{values["backup_type"]!r} is not a backup type; use "full" or "incremental"',
        )
    location = values.get("storage_location")
    if location is not None and location not in storage_names():
        raise InvalidSchedule(
            "storage_location",
            f"unknown storage location {location!r} (configured: {', '.join(storage_names())})",
        )
    consistency = values.get("consistency")
    if consistency and consistency not in CONSISTENCY_MODES:
        raise InvalidSchedule(
            "consistency", f"consistency must be one of {', '.join(CONSISTENCY_MODES)} (or empty)"
        )
    if values.get("encrypt") is True and not encryption_configured():
        # Refused now, not at every firing: `backup create --encrypt` refuses too.
        raise InvalidSchedule(
            "encrypt",
            "encryption was requested but neither BACKUP_AGE_RECIPIENTS nor "
            "BACKUP_PASSPHRASE is configured",
        )
    jitter = values.get("jitter_seconds")
    if jitter is not None and not (isinstance(jitter, int) and 0 <= jitter <= MAX_JITTER_SECONDS):
        raise InvalidSchedule("jitter_seconds", f"jitter_seconds must be 0-{MAX_JITTER_SECONDS}")
    for field in POLICY_FIELDS:
        value = values.get(field)
        if value is not None and not (isinstance(value, int) and value >= 0):
            raise InvalidSchedule(field, f"{field} must be a whole number ≥ 0 (or null)")


def _apply(schedule: Schedule, changes: dict[str, Any]) -> bool:
    """Put CHANGES (validated) on SCHEDULE; True when its timing changed.
    ScheduleInvalid lists what is wrong; SCHEDULE may then be half-changed,
    but nothing was saved."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise ScheduleInvalid({name: "unknown field" for name in unknown})
    try:
        app_id = changes.get("app_id", schedule.app_id)
        host_id = changes.get("host_id", schedule.host_id)
        if app_id != schedule.app_id or (host_id or "") != schedule.host_id:
            schedule.app_id, schedule.host_id = _check_app(app_id, host_id)
        if "time" in changes:
            changes = {**changes, "time": parse_time(changes["time"])}
        _check_plain(changes)
        before = Timing.of(schedule) if schedule.pk else None
        for field in (*TIMING_FIELDS, *PLAIN_FIELDS):
            if field in changes:
                value = changes[field]
                if field in ("cron_expression", "consistency", "name") and value is None:
                    value = ""
                setattr(schedule, field, value)
        leaves_cron = changes.get("frequency") not in (None, "cron")
        if leaves_cron and "cron_expression" not in changes:
            schedule.cron_expression = ""
        schedule.time = parse_time(schedule.time)  # the model's default is a string
        timing = validate(Timing.of(schedule))
        if "notification_targets" in changes:
            schedule.notification_targets_encrypted = _targets(changes["notification_targets"])
    except InvalidSchedule as exc:
        raise ScheduleInvalid({exc.field: str(exc)}) from None
    return before != timing


def _targets(urls: object) -> str:
    from schedules.secrets import encrypt_targets, validate_targets

    if urls is None:
        return ""
    try:
        return encrypt_targets(validate_targets(urls))
    except ValueError as exc:  # the message names the position, never the secret
        raise InvalidSchedule("notification_targets", str(exc)) from None


def check(schedule: Schedule | None, values: dict[str, Any]) -> None:
    """ScheduleInvalid unless VALUES would be accepted (on SCHEDULE, or as a
    new schedule); saves nothing (the admin's form validates with it)."""
    if schedule is None and "app_id" not in values:
        raise ScheduleInvalid({"app_id": "app_id is required"})
    draft = Schedule(app_id="") if schedule is None else Schedule.objects.get(pk=schedule.pk)
    _apply(draft, dict(values))


def create_schedule(values: dict[str, Any]) -> Schedule:
    """A new schedule from VALUES (app_id and the fields of EDITABLE)."""
    if "app_id" not in values:
        raise ScheduleInvalid({"app_id": "app_id is required"})
    schedule = Schedule(app_id="")
    _apply(schedule, dict(values))
    with transaction.atomic():
        schedule.save()
        beat.project(schedule)
    logger.info("schedule %s created for %s: %s", schedule.pk, schedule.app_id, schedule)
    return schedule


def update_schedule(schedule: Schedule, changes: dict[str, Any]) -> Schedule:
    with transaction.atomic():
        locked = Schedule.objects.select_for_update().get(pk=schedule.pk)
        was_enabled = locked.enabled
        timing_changed = _apply(locked, dict(changes))
        locked.save()
        beat.project(locked, timing_changed=timing_changed or (locked.enabled and not was_enabled))
    logger.info("schedule %s updated (%s)", locked.pk, ", ".join(sorted(changes)) or "nothing")
    return locked


def set_enabled(schedule: Schedule, enabled: bool) -> Schedule:
    return update_schedule(schedule, {"enabled": bool(enabled)})


def delete_schedule(schedule: Schedule) -> None:
    with transaction.atomic():
        beat.unproject(schedule)
        schedule.delete()
    logger.info("schedule %s of %s deleted", schedule.pk, schedule.app_id)


def run_now(schedule: Schedule) -> ScheduleFiring:
    """A firing of SCHEDULE for this minute, started at once (no jitter, no
    wait for the beat). The same unique row as a beat firing: a run now and
    a firing of the same minute cannot both run."""
    from schedules.tasks.firing import start_firing

    scheduled_for = minute_floor(timezone.now())
    try:
        with transaction.atomic():
            firing = ScheduleFiring.objects.create(
                schedule=schedule, scheduled_for=scheduled_for, manual=True
            )
    except IntegrityError:
        raise AlreadyFiring(
            f"schedule {schedule.pk} already has a run for {scheduled_for:%Y-%m-%d %H:%M} UTC; "
            "try again in a minute"
        ) from None
    transaction.on_commit(lambda: start_firing.apply_async(args=[firing.pk], queue=beat.FIRE_QUEUE))
    return firing
