"""Admin: schedules in the product's own terms ("daily at 02:00
Europe/Berlin", next run, last run, last result), with enable, disable and
run-now actions. Saving and deleting go through schedules.services, so the
beat projection follows; the raw django-celery-beat tables are not shown
(a PeriodicTask edited by hand would be overwritten at the next change of
its schedule, and the settings' entries are rewritten by beat at start)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django_celery_beat import models as beat_models

from console.format import human_size
from console.forms import BACKUP_KINDS, location_label
from engine.quiesce import CONSISTENCY_MODES
from fleet.errors import AppOnManyHosts
from schedules import services
from schedules.admin.widgets import WriteOnlyTextarea
from schedules.models import Schedule, ScheduleFiring
from schedules.retention_service import plan_retention
from schedules.secrets import masked
from schedules.selectors import WEEKDAYS, describe, firing_result, schedule_state
from snapshots.admin import AppIdFilter
from snapshots.storage_locations import storage_names

FORM_FIELDS = [
    "app_id", "host_id", "name", "enabled", "frequency", "time", "timezone", "weekday",
    "day_of_month", "cron_expression", "jitter_seconds", "action", "backup_type",
    "storage_location", "consistency", "encrypt", "retention_days", "keep_last", "keep_daily",
    "keep_weekly", "keep_monthly", "keep_yearly", "notify_on_success",
]  # fmt: skip

for model in (
    beat_models.PeriodicTask, beat_models.CrontabSchedule, beat_models.IntervalSchedule,
    beat_models.SolarSchedule, beat_models.ClockedSchedule,
):  # fmt: skip
    if admin.site.is_registered(model):
        admin.site.unregister(model)


class ScheduleForm(forms.ModelForm):
    """The model's fields plus the target URLs, write-only: the field starts
    empty (the stored ones are listed masked); empty keeps them."""

    new_targets = forms.CharField(
        label="notification targets", required=False,
        # Never rendered back: a form shown again for an error must not echo secrets.
        widget=WriteOnlyTextarea(attrs={"rows": 3, "cols": 80, "autocomplete": "off"}),
        help_text="One Apprise URL per line; stored encrypted, never shown. Empty: keep.",
    )  # fmt: skip
    clear_targets = forms.BooleanField(label="remove all targets", required=False)

    class Meta:
        model = Schedule
        fields = FORM_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fields = self.fields
        fields["action"].required = False  # left out: a backup schedule, as before
        # Choices in the operator's words; the service still checks every value.
        fields["weekday"].widget = forms.Select(
            choices=[("", "—"), *((str(n), name) for n, name in enumerate(WEEKDAYS))]
        )
        fields["backup_type"].widget = forms.Select(choices=BACKUP_KINDS)
        locations = [(name, location_label(name)) for name in storage_names()]
        current = self.instance.storage_location if self.instance.pk else None
        if current and current not in storage_names():  # shown, and refused on save
            locations.append((current, f"{current} (not configured)"))
        fields["storage_location"].widget = forms.Select(choices=locations)
        fields["time"].help_text = "HH:MM in the timezone; hourly: only its minute is used."
        fields["host_id"].help_text = (
            "The Docker host the app is on; empty: the app's only host (needed when the app "
            "id is on several hosts)."
        )
        fields["day_of_month"].help_text = "Monthly: 1-31; 29-31 mean the month's last day."
        fields["cron_expression"].help_text = "Cron: minute hour day-of-month month weekday."
        fields["jitter_seconds"].help_text = "A random delay of up to this many seconds."
        fields["consistency"].widget = forms.Select(
            choices=[("", "the app's own policy"), *((mode, mode) for mode in CONSISTENCY_MODES)]
        )
        fields[
            "consistency"
        ].help_text = (
            "Whether the app's containers are paused or stopped while its volumes are read."
        )
        fields["encrypt"].widget.choices = [
            ("unknown", "the deployment's default"), ("true", "encrypt"),
            ("false", "do not encrypt"),
        ]  # fmt: skip
        fields["action"].widget = forms.Select(
            choices=[("backup", "back up"), ("drill", "restore drill of the latest snapshot")]
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        values = {name: data.get(name) for name in FORM_FIELDS if name in data}
        values["action"] = values.get("action") or Schedule.Action.BACKUP
        for name in ("cron_expression", "consistency", "name"):
            values[name] = values.get(name) or ""
        urls = [line.strip() for line in (data.get("new_targets") or "").splitlines()]
        if data.get("clear_targets"):
            values["notification_targets"] = []
        elif any(urls):
            values["notification_targets"] = [url for url in urls if url]
        existing = self.instance if self.instance.pk else None
        values["host_id"] = values.get("host_id") or ""
        try:
            services.check(existing, values)
        except services.ScheduleInvalid as exc:
            for field, message in exc.errors.items():
                self.add_error(field if field in self.fields else None, message)
        except AppOnManyHosts as exc:  # the API's 409: here, the field to fill in
            self.add_error("host_id", str(exc))
        self.service_values = values
        return data


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = [
        "__str__", "app_id", "host_id", "timetable", "enabled", "next_run", "last_run",
        "last_result", "storage_location", "backup_type",
    ]  # fmt: skip
    list_filter = [AppIdFilter, "host_id", "enabled", "frequency", "storage_location"]
    search_fields = ["app_id", "name"]
    readonly_fields = ["timetable", "next_run", "last_run", "last_result", "targets_masked",
                       "recent_firings", "retention_preview"]  # fmt: skip
    fieldsets = [
        (None, {"fields": ["app_id", "host_id", "name", "enabled", "action"]}),
        ("When", {"fields": ["frequency", "time", "timezone", "weekday", "day_of_month",
                             "cron_expression", "jitter_seconds", "timetable", "next_run"]}),
        ("What is backed up, and where", {"fields": ["backup_type", "storage_location",
                                                     "consistency", "encrypt"]}),
        ("Retention (empty: the rule is not used)", {
            "fields": ["retention_days", "keep_last", "keep_daily", "keep_weekly", "keep_monthly",
                       "keep_yearly", "retention_preview"],
        }),
        ("Notification targets", {"fields": ["targets_masked", "new_targets", "clear_targets",
                                             "notify_on_success"]}),
        ("Last runs", {"fields": ["last_run", "last_result", "recent_firings"]}),
    ]  # fmt: skip
    actions = ["enable", "disable", "run_now"]

    @admin.display(description="when")
    def timetable(self, schedule: Schedule) -> str:
        return describe(schedule) if schedule.pk else "—"

    @admin.display(description="next run")
    def next_run(self, schedule: Schedule) -> str:
        state = schedule_state(schedule) if schedule.pk else None
        return f"{state.next_run_at:%Y-%m-%d %H:%M} UTC" if state and state.next_run_at else "—"

    @admin.display(description="last run")
    def last_run(self, schedule: Schedule) -> str:
        state = schedule_state(schedule) if schedule.pk else None
        return f"{state.last_run_at:%Y-%m-%d %H:%M} UTC" if state and state.last_run_at else "never"

    @admin.display(description="last result")
    def last_result(self, schedule: Schedule) -> str:
        state = schedule_state(schedule) if schedule.pk else None
        if state is None or state.last_result is None:
            return "—"
        return f"{state.last_result}: {state.last_error}" if state.last_error else state.last_result

    @admin.display(description="targets (masked)")
    def targets_masked(self, schedule: Schedule) -> str:
        return ", ".join(masked(schedule.notification_targets_encrypted)) or "—"

    @admin.display(description="retention preview")
    def retention_preview(self, schedule: Schedule) -> str:
        """What the saved rules keep and remove now, and a link to try others."""
        if not schedule.pk:
            return "— (save first; then try rules on the preview page)"
        outcome = plan_retention(schedule.app_id)
        url = reverse("admin:console_retention", args=[schedule.app_id])
        return format_html(
            '{} kept, {} would be removed ({} freed). <a href="{}?schedule={}" '
            'id="retention-preview-link">Which ones, and why; try other rules</a>',
            len(outcome.plan.kept), len(outcome.plan.removed),
            human_size(outcome.freed_bytes), url, schedule.pk,
        )  # fmt: skip

    @admin.display(description="recent firings")
    def recent_firings(self, schedule: Schedule) -> str:
        rows = ScheduleFiring.objects.select_related("snapshot").filter(schedule=schedule)[:10]
        return (
            "; ".join(f"{f.scheduled_for:%Y-%m-%d %H:%M} {firing_result(f)}" for f in rows) or "—"
        )

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        values = form.service_values
        if change:
            saved = services.update_schedule(obj, values)
        else:
            saved = services.create_schedule(values)
        obj.pk = obj.id = saved.pk

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        services.delete_schedule(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            services.delete_schedule(schedule)

    @admin.action(description="Enable selected schedules")
    def enable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            services.set_enabled(schedule, True)
        self.message_user(request, f"{queryset.count()} schedule(s) enabled", messages.SUCCESS)

    @admin.action(description="Disable selected schedules")
    def disable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            services.set_enabled(schedule, False)
        self.message_user(request, f"{queryset.count()} schedule(s) disabled", messages.SUCCESS)

    @admin.action(description="Run selected schedules now")
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            try:
                services.run_now(schedule)
            except services.AlreadyFiring as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                # Starts with "schedule": the admin capitalises a message's first letter.
                queued = f"schedule {schedule.pk} ({schedule}): backup queued"
                self.message_user(request, queued, messages.SUCCESS)
