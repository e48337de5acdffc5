"""One row per restore drill of a snapshot: what was tried, how it ended,
and the figures per database. The drill's id is also its Run's id and its
Celery task id (GET tasks/<id> shows its progress) and the value of the
`backup-drill` label on everything it creates in Docker."""

from __future__ import annotations

from django.db import models


class Drill(models.Model):
    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        FINISHED = "finished"

    class Outcome(models.TextChoices):
        PASSED = "passed"
        FAILED = "failed"
        SKIPPED = "skipped"  # not tried: no room, no image, a drill already running

    id = models.UUIDField(primary_key=True, editable=False)
    run = models.OneToOneField(
        "snapshots.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # SET_NULL: the history of drills outlives a snapshot retention removed.
    snapshot = models.ForeignKey(
        "snapshots.Snapshot", null=True, blank=True, on_delete=models.SET_NULL,
        related_name="drills",
    )  # fmt: skip
    backup_id = models.CharField(max_length=64)
    app_id = models.CharField(max_length=128)
    host_id = models.CharField(max_length=128, blank=True)
    schedule_id = models.IntegerField(null=True, blank=True)  # the schedule that ran it
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True)
    reason = models.TextField(blank=True)  # why it failed or was skipped, in words
    # Per database: container, engine, image, database, ok, tables, rows, the
    # counts recorded at backup time, mismatches (see engine.drill.run).
    databases = models.JSONField(default=list, blank=True)
    verify = models.JSONField(default=dict, blank=True)  # the deep verify's summary
    duration_seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["snapshot", "-created_at"]),
            models.Index(fields=["app_id", "-created_at"]),
            models.Index(fields=["state"]),
        ]

    def __str__(self) -> str:
        return f"drill {self.backup_id} ({self.outcome or self.state})"
