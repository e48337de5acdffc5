"""Snapshots (one stored backup each), runs (one operation each) and app locks.

The rows are the truth about work: a snapshot is `completed` only after its
file is durable, and a run is claimed with a conditional update so a
redelivered Celery message never does the same work twice."""

from __future__ import annotations

import uuid

from django.db import models


class Snapshot(models.Model):
    class Kind(models.TextChoices):
        FULL = "full"
        INCREMENTAL = "incremental"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    class Purpose(models.TextChoices):
        MANUAL = "manual"
        SCHEDULED = "scheduled"
        PRE_RESTORE = "pre_restore"  # safety backup taken before a restore

    backup_id = models.CharField(max_length=64, unique=True)
    app_id = models.CharField(max_length=128)
    host_id = models.CharField(max_length=128)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.FULL)
    # PROTECT: a snapshot others depend on cannot be deleted from under them.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    # 0 for a full backup; the k-th incremental after its full has k.
    chain_position = models.PositiveIntegerField(default=0)
    # File bytes the archive holds (volumes, dumps, config), and what a full
    # backup of the same state would have held: an incremental's saving.
    bytes_written = models.BigIntegerField(null=True, blank=True)
    bytes_full = models.BigIntegerField(null=True, blank=True)
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.MANUAL)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    consistency = models.CharField(max_length=8, default="live")
    compression = models.CharField(max_length=8, default="zstd")
    encrypted = models.BooleanField(default=False)
    encryption = models.CharField(max_length=16, blank=True)  # age-x25519, age-scrypt
    storage_location = models.CharField(max_length=64, default="local")
    storage_key = models.CharField(max_length=512, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    contents = models.JSONField(default=dict, blank=True)
    # Sentences about what the backup could not do well, e.g. a live database
    # data directory copied raw without a dump (engine.database_detection).
    warnings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["app_id", "-created_at"]),
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["-created_at"]),
            models.Index(fields=["size_bytes"]),
        ]

    def __str__(self) -> str:
        return self.backup_id

    @property
    def chain_length(self) -> int:
        """Archives a restore of this snapshot reads: its full and the
        incrementals up to it."""
        return self.chain_position + 1

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class Run(models.Model):
    """One operation (backup, verify, restore, upload) from request to end.
    Its id is also the Celery task id, so the API shows one thing."""

    class Operation(models.TextChoices):
        BACKUP = "backup"
        VERIFY = "verify"
        RESTORE = "restore"
        UPLOAD = "upload"

    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    operation = models.CharField(max_length=16, choices=Operation.choices)
    app_id = models.CharField(max_length=128)
    snapshot = models.ForeignKey(
        Snapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    phase = models.CharField(max_length=32, blank=True)
    bytes_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    options = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    host_id = models.CharField(max_length=128, blank=True)
    worker = models.CharField(max_length=255, blank=True)  # hostname:pid that claimed it
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Write-ahead record of the steps that changed an app's state (containers
    # stopped or paused, volumes swapped, databases touched, commit decided),
    # written before each step: what recovery reads to finish or undo a run
    # whose worker died.
    journal = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["app_id", "-created_at"]),
            models.Index(fields=["state", "host_id"]),
        ]
        constraints = [
            # Two restore requests arriving together both pass the "busy"
            # query; the database lets only one of them in (the other gets 409).
            # Per host: the same app id on two hosts is two apps.
            models.UniqueConstraint(
                fields=["host_id", "app_id"],
                condition=models.Q(operation="restore", state__in=["pending", "running"]),
                name="one_active_restore_per_host_app",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.operation} {self.app_id} ({self.state})"


class AppLockQuerySet(models.QuerySet):
    def held(self) -> AppLockQuerySet:
        """Locks some run holds now (expired or not: an expired lease is
        still held until recovery takes it over)."""
        return self.filter(run__isnull=False)


class AppLock(models.Model):
    """At most one backup or restore per app at a time, across all workers:
    a lease with fencing. An app is (HOST_ID, APP_ID): the same Compose
    project name on two Docker hosts is two apps, each with its own lock.

    One row per app, kept for ever, so FENCE only ever grows: each grant of
    the lease increments it. The holder (RUN, TOKEN, FENCE) renews
    expires_at on a timer of its own, and checks that it still holds the
    lease before each step that changes an app's state. A lease is taken over
    only once expired by the database's clock (never a worker's clock, PID or
    hostname), and a takeover increments FENCE, so a late step of the old
    holder fails its check instead of acting under the new one."""

    host_id = models.CharField(max_length=128)  # the run's host (BACKUP_HOST_ID)
    # The app; a host's drill lock is "drill:<host>" (no app id has a ':').
    app_id = models.CharField(max_length=128)
    run = models.ForeignKey(Run, null=True, on_delete=models.SET_NULL, related_name="+")
    token = models.CharField(max_length=64, blank=True)  # the holder's secret; empty when free
    fence = models.BigIntegerField(default=0)
    acquired_at = models.DateTimeField(null=True)
    heartbeat_at = models.DateTimeField(null=True)
    expires_at = models.DateTimeField(null=True)

    objects = AppLockQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host_id", "app_id"], name="one_lock_per_host_app")
        ]

    def __str__(self) -> str:
        return (
            f"lock {self.app_id}@{self.host_id} by {self.run_id or 'nobody'} (fence {self.fence})"
        )


class AppBackupPolicy(models.Model):
    """Per-app choices an operator makes (edited in the admin)."""

    class Consistency(models.TextChoices):
        LIVE = "live", "read volumes live"
        PAUSE = "pause", "pause containers while volumes are read"
        STOP = "stop", "stop containers while volumes are read"

    app_id = models.CharField(max_length=128, primary_key=True)
    consistency = models.CharField(
        max_length=8, choices=Consistency.choices, default=Consistency.LIVE
    )
    include_databases = models.BooleanField(default=True)
    # Per service: {"db": {"skip": true}} or {"db": {"engine": "mysql", "user": "wp",
    # "password_env": "WP_DB_PASSWORD"}}; secrets are never stored here (see
    # snapshots/services/overrides.py).
    database_overrides = models.JSONField(default=dict, blank=True)
    # An incremental backup follows at most this many incrementals since the
    # chain's full: the next one is full again (restores read shorter chains).
    incrementals_before_full = models.PositiveSmallIntegerField(default=7)

    class Meta:
        verbose_name_plural = "app backup policies"

    def __str__(self) -> str:
        return f"policy {self.app_id}"


from snapshots.models_api import ApiKey  # noqa: E402, F401
from snapshots.models_offsite import OffsiteCopy, UploadPart  # noqa: E402, F401
