"""Schedules (when an app is backed up, kept how long, who hears of failures),
their firings (one row per scheduled time: what makes a firing run once) and
the notifications sent.

A Schedule is the operator's word; the PeriodicTask/CrontabSchedule rows of
django-celery-beat are its projection (schedules/beat.py), rebuilt on every
save and delete so a running beat picks the change up. Notification target
URLs hold secrets (tokens, passwords): they are stored encrypted
(schedules/secrets.py) and never shown back in full."""

from __future__ import annotations

from django.db import models


class Schedule(models.Model):
    class Frequency(models.TextChoices):
        HOURLY = "hourly"  # every hour at `time`'s minute
        DAILY = "daily"
        WEEKLY = "weekly"
        MONTHLY = "monthly"
        CRON = "cron"  # a five-field cron expression in cron_expression

    class BackupType(models.TextChoices):
        FULL = "full"
        INCREMENTAL = "incremental"

    class Action(models.TextChoices):
        BACKUP = "backup"
        DRILL = "drill"  # a restore drill of the app's latest completed snapshot (drills app)

    name = models.CharField(max_length=128, blank=True)
    app_id = models.CharField(max_length=128)
    # The Docker host the app lives on; blank means this deployment's
    # BACKUP_HOST_ID (one host until the fleet exists).
    host_id = models.CharField(max_length=128, blank=True)
    enabled = models.BooleanField(default=True)
    frequency = models.CharField(max_length=8, choices=Frequency.choices, default=Frequency.DAILY)
    time = models.TimeField(default="02:00")  # HH:MM in `timezone`
    timezone = models.CharField(max_length=64, default="UTC")  # IANA name
    weekday = models.PositiveSmallIntegerField(null=True, blank=True)  # 0=Monday … 6=Sunday
    day_of_month = models.PositiveSmallIntegerField(null=True, blank=True)  # 1-31; 31 = last day
    cron_expression = models.CharField(max_length=128, blank=True)
    # Seconds of random delay added to each firing, so many apps on one
    # host do not all start at 02:00:00.
    jitter_seconds = models.PositiveIntegerField(default=0)

    backup_type = models.CharField(
        max_length=16, choices=BackupType.choices, default=BackupType.FULL
    )
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.BACKUP)
    storage_location = models.CharField(max_length=64, default="local")
    consistency = models.CharField(max_length=8, blank=True)  # blank: the app's policy
    encrypt = models.BooleanField(null=True, blank=True)  # None: the deployment's default

    # Retention (schedules/retention.py); None means the rule is not used.
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    keep_last = models.PositiveIntegerField(null=True, blank=True)
    keep_daily = models.PositiveIntegerField(null=True, blank=True)
    keep_weekly = models.PositiveIntegerField(null=True, blank=True)
    keep_monthly = models.PositiveIntegerField(null=True, blank=True)
    keep_yearly = models.PositiveIntegerField(null=True, blank=True)

    # Apprise URLs, a JSON list encrypted with schedules.secrets; empty: none.
    notification_targets_encrypted = models.TextField(blank=True)
    notify_on_success = models.BooleanField(default=False)

    # The projection onto django-celery-beat (schedules/beat.py owns it).
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="backup_schedule",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["app_id", "id"]
        indexes = [models.Index(fields=["app_id"])]

    def __str__(self) -> str:
        at = f":{self.time:%M}" if self.frequency == self.Frequency.HOURLY else f"{self.time:%H:%M}"
        return self.name or f"{self.app_id} {self.frequency} {at} {self.timezone}"


class ScheduleFiring(models.Model):
    """One scheduled time of one schedule. The unique (schedule,
    scheduled_for) row is the dedupe: two beats, a redelivered message or a
    "run now" racing a firing can insert it only once."""

    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        SKIPPED = "skipped"  # the app stayed busy past the wait limit, or disabled

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="firings")
    scheduled_for = models.DateTimeField()
    manual = models.BooleanField(default=False)  # "run now"
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    snapshot = models.ForeignKey(
        "snapshots.Snapshot", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    run_id = models.UUIDField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-scheduled_for"]
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"], name="one_firing_per_scheduled_time"
            )
        ]
        indexes = [models.Index(fields=["schedule", "-scheduled_for"])]

    def __str__(self) -> str:
        return f"{self.schedule_id} at {self.scheduled_for:%Y-%m-%d %H:%M} ({self.state})"


class AppNotificationTargets(models.Model):
    """An app's own target list, used when a schedule has none (and for
    events that belong to the app, not a schedule)."""

    app_id = models.CharField(max_length=128, primary_key=True)
    targets_encrypted = models.TextField(blank=True)
    notify_on_success = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "app notification targets"

    def __str__(self) -> str:
        return f"notifications {self.app_id}"


class Notification(models.Model):
    """One event told (or tried) to a target list: what an operator reads
    when asking "were we told?". Holds no target URL, only masked names."""

    class Event(models.TextChoices):
        BACKUP_FAILED = "backup_failed"
        BACKUP_SUCCEEDED = "backup_succeeded"
        BACKUP_SKIPPED = "backup_skipped"
        RETENTION_FAILED = "retention_failed"
        VERIFY_FAILED = "verify_failed"
        DRILL_FAILED = "drill_failed"  # a restore drill of a snapshot failed
        BACKUP_MISSED = "backup_missed"  # no successful backup for too long
        TEST = "test"

    class State(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    event = models.CharField(max_length=32, choices=Event.choices)
    app_id = models.CharField(max_length=128, blank=True)
    schedule = models.ForeignKey(
        Schedule, null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    title = models.CharField(max_length=255)
    body = models.TextField(blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    targets = models.JSONField(default=list, blank=True)  # masked, e.g. "mailto://…@example.com"
    error = models.TextField(blank=True)  # scrubbed of secrets
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["app_id", "event", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.event} {self.app_id} ({self.state})"
