"""Request and response shapes of the schedules API. Types are checked
here; what the values mean (a real timezone, a valid cron expression, an
app on this host) is checked by schedules.services, the same for the API,
the admin and the CLI."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from fleet.selectors import HOST_ID_PATTERN
from schedules.models import Schedule, ScheduleFiring
from schedules.selectors import ScheduleState
from snapshots.api.serializers import APP_ID_PATTERN


def _count(help_text: str) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=0, required=False, allow_null=True, help_text=help_text
    )


class ScheduleWriteSerializer(serializers.Serializer):
    """POST (app_id required) and PATCH (every field optional)."""

    app_id = serializers.RegexField(APP_ID_PATTERN, max_length=128)
    host_id = serializers.RegexField(
        f"^{HOST_ID_PATTERN}$", required=False, allow_null=True, allow_blank=True,
        max_length=128,
        help_text="the app's Docker host; needed when the app id is on several hosts (409 "
        "lists them). null: the app's only host, wherever it is",
    )  # fmt: skip
    name = serializers.CharField(max_length=128, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    frequency = serializers.CharField(
        required=False,
        help_text="hourly (at the minute of `time`) | daily | weekly | monthly | cron "
        "(then cron_expression)",
    )
    time = serializers.CharField(
        required=False, max_length=16, help_text="HH:MM, 24-hour, in `timezone`"
    )
    timezone = serializers.CharField(
        required=False, max_length=64, help_text="IANA name, e.g. Europe/Berlin; default UTC"
    )
    weekday = serializers.IntegerField(
        required=False, allow_null=True, help_text="weekly: 0 = Monday … 6 = Sunday"
    )
    day_of_month = serializers.IntegerField(
        required=False, allow_null=True,
        help_text="monthly: 1-31; a day the month lacks means its last day (31 = last day)",
    )  # fmt: skip
    cron_expression = serializers.CharField(
        required=False, allow_blank=True, max_length=128,
        help_text="frequency cron: minute hour day-of-month month day-of-week",
    )  # fmt: skip
    jitter_seconds = serializers.IntegerField(
        required=False, min_value=0, max_value=3600,
        help_text="a random delay of up to this many seconds before each scheduled backup",
    )  # fmt: skip
    backup_type = serializers.CharField(
        required=False, help_text='"full" or "incremental" (full when its chain needs one)'
    )
    action = serializers.CharField(
        required=False, help_text='"backup" (default) or "drill": a restore drill of the '
        "app's latest completed snapshot",
    )  # fmt: skip
    storage_location = serializers.CharField(required=False, max_length=64)
    consistency = serializers.CharField(
        required=False, allow_blank=True, help_text="live | pause | stop; empty: the app's policy"
    )
    encrypt = serializers.BooleanField(required=False, allow_null=True)
    retention_days = _count("remove snapshots older than this many days")
    keep_last = _count("keep the newest N")
    keep_daily = _count("keep the newest of each of the last N days")
    keep_weekly = _count("keep the newest of each of the last N weeks")
    keep_monthly = _count("keep the newest of each of the last N months")
    keep_yearly = _count("keep the newest of each of the last N years")
    notify_on_success = serializers.BooleanField(required=False)
    notification_targets = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False), required=False, allow_null=True,
        write_only=True,
        help_text="Apprise URLs (mailto://, json://, ntfys://, slack://…); stored encrypted, "
        "never shown back (see notification_targets_masked)",
    )  # fmt: skip

    def __init__(self, *args: Any, partial_update: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if partial_update:
            self.fields["app_id"].required = False


class ScheduleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    app_id = serializers.CharField()
    host_id = serializers.CharField(
        allow_null=True, help_text="the host its backups run on; null: the app's only host"
    )
    enabled = serializers.BooleanField()
    frequency = serializers.ChoiceField(choices=Schedule.Frequency.choices)
    time = serializers.CharField(help_text="HH:MM in `timezone`")
    timezone = serializers.CharField()
    weekday = serializers.IntegerField(allow_null=True)
    day_of_month = serializers.IntegerField(allow_null=True)
    cron_expression = serializers.CharField()
    jitter_seconds = serializers.IntegerField()
    backup_type = serializers.CharField(help_text="full or incremental")
    action = serializers.CharField(help_text="backup, or drill (a restore drill)")
    storage_location = serializers.CharField()
    consistency = serializers.CharField()
    encrypt = serializers.BooleanField(allow_null=True)
    retention_days = serializers.IntegerField(allow_null=True)
    keep_last = serializers.IntegerField(allow_null=True)
    keep_daily = serializers.IntegerField(allow_null=True)
    keep_weekly = serializers.IntegerField(allow_null=True)
    keep_monthly = serializers.IntegerField(allow_null=True)
    keep_yearly = serializers.IntegerField(allow_null=True)
    notify_on_success = serializers.BooleanField()
    notification_targets_masked = serializers.ListField(child=serializers.CharField())
    next_run_at = serializers.DateTimeField(allow_null=True, help_text="null when disabled")
    last_run_at = serializers.DateTimeField(allow_null=True)
    last_result = serializers.CharField(
        allow_null=True, help_text="completed | failed | skipped | running | pending; null: never"
    )
    last_error = serializers.CharField()
    last_backup_id = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def schedule_data(schedule: Schedule, state: ScheduleState) -> dict[str, Any]:
    from schedules.secrets import masked

    state_fields = ("next_run_at", "last_run_at", "last_result", "last_error", "last_backup_id")
    fields: dict[str, Any] = {
        name: getattr(schedule, name)
        for name in ScheduleSerializer._declared_fields
        if name not in (*state_fields, "notification_targets_masked", "time")
    }
    fields.update({name: getattr(state, name) for name in state_fields})
    fields["host_id"] = schedule.host_id or None
    fields["time"] = schedule.time if isinstance(schedule.time, str) else f"{schedule.time:%H:%M}"
    fields["notification_targets_masked"] = masked(schedule.notification_targets_encrypted)
    return fields


class ScheduleListSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    schedules = ScheduleSerializer(many=True)


class ScheduleListQuery(serializers.Serializer):
    app_id = serializers.RegexField(APP_ID_PATTERN, required=False, max_length=128)
    host_id = serializers.RegexField(f"^{HOST_ID_PATTERN}$", required=False, max_length=128)


class FiringSerializer(serializers.Serializer):
    firing_id = serializers.IntegerField(source="pk")
    schedule_id = serializers.IntegerField()
    scheduled_for = serializers.DateTimeField()
    manual = serializers.BooleanField()
    state = serializers.ChoiceField(choices=ScheduleFiring.State.choices)


class DeletedScheduleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    app_id = serializers.CharField()
    deleted = serializers.BooleanField()
