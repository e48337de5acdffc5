"""Request validation and response shapes of the REST API. Representation
only: every decision is in services and selectors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from drills import selectors as drills_selectors
from fleet.selectors import HOST_ID_PATTERN
from snapshots.models import Run, Snapshot
from snapshots.services.verify import contains as verify_contains
from snapshots.storage_locations import storage_names

# A Compose project name (engine.discovery checks the same), and a storage
# location's name: in the schema, so clients and fuzzers know them too.
APP_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
LOCATION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"  # "+": local+s3


def storage_location_field(**kwargs: Any) -> serializers.ChoiceField:
    names = storage_names()
    message = f'unknown storage location "{{input}}" (configured: {", ".join(names)})'
    return serializers.ChoiceField(
        choices=names, error_messages={"invalid_choice": message}, **kwargs
    )


# -- snapshots ---------------------------------------------------------------------


class SnapshotSerializer(serializers.ModelSerializer):
    parent_backup_id = serializers.SerializerMethodField()
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    warnings = serializers.ListField(
        child=serializers.CharField(), read_only=True,
        help_text="what the backup could not do well, e.g. a live database data directory "
        "copied without a dump, and what to do about it",
    )  # fmt: skip
    last_drill = serializers.SerializerMethodField()
    chain_length = serializers.IntegerField(
        read_only=True, help_text="archives a restore reads: the full and the incrementals up "
        "to this one (1 for a full)",
    )  # fmt: skip
    bytes_written = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="file bytes this archive holds"
    )
    bytes_full = serializers.IntegerField(
        read_only=True, allow_null=True,
        help_text="file bytes a full backup of the same state would have held",
    )  # fmt: skip

    class Meta:
        model = Snapshot
        fields = [
            "backup_id", "app_id", "host_id", "kind", "parent_backup_id", "chain_position",
            "chain_length", "bytes_written", "bytes_full", "purpose", "status",
            "consistency", "compression", "encrypted", "encryption", "storage_location",
            "storage_key", "size_bytes", "sha256", "error", "created_at", "started_at",
            "finished_at", "duration_seconds", "warnings", "last_drill",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(serializers.DictField(allow_null=True))
    def get_last_drill(self, snapshot: Snapshot) -> dict[str, Any] | None:
        """Its last finished restore drill (drills app), null if never drilled."""
        return drills_selectors.last_drill_of(snapshot)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_parent_backup_id(self, snapshot: Snapshot) -> str | None:
        # Lists annotate it (one query per page); the detail has select_related.
        if hasattr(snapshot, "parent_backup_id"):
            return snapshot.parent_backup_id
        return snapshot.parent.backup_id if snapshot.parent_id else None

    def to_representation(self, snapshot: Snapshot) -> dict[str, Any]:
        """What DRF's generic path returns, built directly: a page is 50 rows
        x 20 fields, and the generic path was most of a page's CPU time.
        tests/api/test_snapshot_list.py keeps the two equal."""
        row = {name: getattr(snapshot, name) for name in _PLAIN_FIELDS}
        row["parent_backup_id"] = self.get_parent_backup_id(snapshot)
        for name in ("created_at", "started_at", "finished_at"):
            row[name] = _iso(getattr(snapshot, name))
        row["duration_seconds"] = snapshot.duration_seconds
        row["warnings"] = list(snapshot.warnings or [])
        row["last_drill"] = self.get_last_drill(snapshot)
        return {name: row[name] for name in SnapshotSerializer.Meta.fields}

    def generic_representation(self, snapshot: Snapshot) -> dict[str, Any]:
        return dict(super().to_representation(snapshot))


_PLAIN_FIELDS = [
    "backup_id", "app_id", "host_id", "kind", "chain_position", "chain_length",
    "bytes_written", "bytes_full", "purpose", "status", "consistency",
    "compression", "encrypted", "encryption", "storage_location", "storage_key", "size_bytes",
    "sha256", "error",
]  # fmt: skip


def _iso(moment: datetime | None) -> str | None:
    """As DRF's DateTimeField writes it with TIME_ZONE = UTC."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class SnapshotDetailSerializer(SnapshotSerializer):
    contents = serializers.DictField(
        read_only=True, help_text="what the archive holds: volumes, databases, config files"
    )
    children = serializers.SerializerMethodField()
    copies = serializers.SerializerMethodField()

    class Meta(SnapshotSerializer.Meta):
        fields = [*SnapshotSerializer.Meta.fields, "contents", "children", "copies"]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_copies(self, snapshot: Snapshot) -> list[dict[str, Any]]:
        """Where its copies are: local, and each off-site copy with its state."""
        return list(self.context.get("copies", []))

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_children(self, snapshot: Snapshot) -> list[str]:
        """Backup ids of the snapshots that depend on it (given by the view)."""
        return list(self.context.get("children", []))

    def to_representation(self, snapshot: Snapshot) -> dict[str, Any]:
        row = super().to_representation(snapshot)
        row["contents"] = snapshot.contents
        row["children"] = self.get_children(snapshot)
        row["copies"] = self.get_copies(snapshot)
        return row


def host_id_field(help_text: str) -> serializers.RegexField:
    return serializers.RegexField(
        f"^{HOST_ID_PATTERN}$", required=False, help_text=help_text,
        error_messages={"invalid": "not a host id: letters, digits, '.', '-' and '_'"},
    )  # fmt: skip


class SnapshotListQuery(serializers.Serializer):
    app_id = serializers.RegexField(APP_ID_PATTERN, required=False, max_length=128)
    status = serializers.ChoiceField(choices=Snapshot.Status.choices, required=False)
    kind = serializers.ChoiceField(choices=Snapshot.Kind.choices, required=False)
    purpose = serializers.ChoiceField(choices=Snapshot.Purpose.choices, required=False)
    storage_location = serializers.RegexField(LOCATION_PATTERN, required=False, max_length=64)
    host_id = host_id_field("only the snapshots this host made")
    sort = serializers.ChoiceField(
        choices=["created_at", "-created_at", "size_bytes", "-size_bytes"],
        default="-created_at",
        help_text="newest first by default; a leading '-' sorts descending",
    )
    page = serializers.IntegerField(min_value=1, max_value=1_000_000, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=500, default=50)


class SnapshotPageSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="snapshots matching the filters")
    total_size_bytes = serializers.IntegerField(help_text="their stored bytes")
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    pages = serializers.IntegerField()
    snapshots = SnapshotSerializer(many=True)


@extend_schema_field({"type": "string", "enum": ["full", "incremental"], "default": "full"})
class BackupTypeField(serializers.CharField):
    """full or incremental (snapshots.services.chain decides, when it runs,
    whether an incremental can be one)."""

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if value not in ("full", "incremental"):
            raise serializers.ValidationError(
                f'"{value}" is not a backup type; use "full" or "incremental"'
            )
        return value


class BackupRequestSerializer(serializers.Serializer):
    app_id = serializers.RegexField(
        APP_ID_PATTERN,
        max_length=128,
        error_messages={"invalid": "not a valid app id: a Compose project name has lowercase "
                        "letters, digits, '_' and '-', and starts with a letter or digit"},
    )  # fmt: skip
    backup_type = BackupTypeField(default="full")
    encrypt = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="null: as configured (encrypted when keys are configured)",
    )  # fmt: skip
    storage_location = storage_location_field(default="local")
    host_id = host_id_field("the app's Docker host; needed when the app id is on several hosts")


class TaskAcceptedSerializer(serializers.Serializer):
    task_id = serializers.UUIDField(help_text="poll GET tasks/<task_id>")
    operation = serializers.CharField()
    app_id = serializers.CharField()
    backup_id = serializers.CharField(allow_null=True)
    state = serializers.CharField()


class DeletedSnapshotSerializer(serializers.Serializer):
    backup_id = serializers.CharField()
    app_id = serializers.CharField()
    freed_bytes = serializers.IntegerField()
    removed = serializers.ListField(child=serializers.CharField())


# -- verify and restore -----------------------------------------------------------


class VerifyRequestSerializer(serializers.Serializer):
    deep = serializers.BooleanField(
        default=False, help_text="false: checksum only, answered now; true: queued task"
    )


REPORT_FIELDS = ("valid", "checksum_match", "sidecar_match", "sha256", "size_bytes", "deep")


class VerifyContainsSerializer(serializers.Serializer):
    """Counts, as the platform UI's original verify result has them; the
    names and details are in contents."""

    volumes = serializers.IntegerField(min_value=0)
    databases = serializers.IntegerField(min_value=0)
    config_files = serializers.IntegerField(min_value=0)


class CopyCheckSerializer(serializers.Serializer):
    """One copy's check in a verify report (snapshots.services.offsite_verify)."""

    location = serializers.CharField(help_text="local, or the off-site location's name")
    checked = serializers.CharField(
        allow_null=True,
        help_text="read: size and SHA-256 of its bytes; head: size and the SHA-256 the object "
        "carries; read+head: both; null: not checked (an off-site copy not uploaded yet)",
    )
    state = serializers.CharField(
        required=False, help_text="off-site copies: the upload's state (none: no upload)"
    )
    ok = serializers.BooleanField(allow_null=True, help_text="null: not checked")
    error = serializers.CharField(allow_blank=True, help_text="why it failed, naming the copy")
    size_bytes = serializers.IntegerField(required=False, help_text="the size found")


class VerifyReportSerializer(serializers.Serializer):
    task_id = serializers.UUIDField()
    snapshot_id = serializers.CharField(help_text="the backup id (the UI's original name)")
    backup_id = serializers.CharField()
    valid = serializers.BooleanField()
    checksum_match = serializers.BooleanField(allow_null=True)
    sidecar_match = serializers.BooleanField(allow_null=True, help_text="null: no sidecar")
    sha256 = serializers.CharField()
    size_bytes = serializers.IntegerField()
    deep = serializers.BooleanField()
    errors = serializers.ListField(child=serializers.CharField())
    contains = VerifyContainsSerializer()
    contents = serializers.DictField(
        help_text="what is inside: volumes (by name), databases, config_files, file_count, "
        "... (a quick verify: what the snapshot recorded; a deep one: what the scan found)"
    )
    # Only for snapshots with an off-site copy (storage_location s3 or local+s3).
    copies = CopyCheckSerializer(
        many=True, required=False, help_text="one check per copy; absent for local-only snapshots"
    )
    read_from = serializers.CharField(
        required=False, help_text="the copy the main check read (local first: no egress)"
    )

    @staticmethod
    def from_run(run: Run, backup_id: str) -> dict[str, Any]:
        report = dict(run.result or {})
        errors = report.pop("errors", None) or ([run.error] if run.error else [])
        known = {name: report.pop(name, None) for name in REPORT_FIELDS}
        counts = report.pop("contains", None)
        copies = {name: report.pop(name) for name in ("copies", "read_from") if name in report}
        for name in ("backup_id", "snapshot_id", "app_id"):
            report.pop(name, None)
        # Reports written before contents was nested had its keys at the top.
        contents = report.pop("contents", report)
        known["valid"] = bool(known["valid"])
        known["deep"] = bool(known["deep"])
        return {
            "task_id": run.pk, "snapshot_id": backup_id, "backup_id": backup_id, **known,
            "sha256": known["sha256"] or "", "size_bytes": known["size_bytes"] or 0,
            "errors": errors, "contains": counts or verify_contains(contents),
            "contents": contents, **copies,
        }  # fmt: skip


class RestoreRequestSerializer(serializers.Serializer):
    stop_app = serializers.BooleanField(default=True)
    restore_database = serializers.BooleanField(default=True)
    backup_before_restore = serializers.BooleanField(
        default=True, help_text="take a safety backup of the current state first"
    )
    accept_no_database_rollback = serializers.BooleanField(
        default=False,
        help_text="restore the databases even when a failure could not roll them back (the "
        "safety backup holds no dump of them, or the worker cannot read it); without it such a "
        "restore is refused before anything changes",
    )
    host_id = host_id_field("the host to restore on; needed when the app id is on several hosts")
    target_host_id = host_id_field(
        "the same as host_id, by the name of a migration: restore onto this host a snapshot "
        "another host made (it must be on S3 storage); with host_id both must agree (else 409)"
    )


class RestoreQuery(serializers.Serializer):
    wait = serializers.BooleanField(
        default=False, help_text="block until the restore ended (or the server's timeout)"
    )


class RecreatedSerializer(serializers.Serializer):
    containers = serializers.ListField(child=serializers.CharField())
    volumes = serializers.ListField(child=serializers.CharField())
    networks = serializers.ListField(child=serializers.CharField())


class RestoreResultSerializer(serializers.Serializer):
    """A restore task's result (snapshots.services.restore). app_id,
    snapshot_id, restored_volumes, database_restored and duration_seconds are
    the platform UI's original shape."""

    app_id = serializers.CharField()
    snapshot_id = serializers.CharField(allow_null=True, help_text="the backup id restored from")
    backup_id = serializers.CharField(allow_null=True)
    restored_volumes = serializers.IntegerField(
        min_value=0, help_text="how many volumes were restored (0 when the restore failed)"
    )
    restored_volume_names = serializers.ListField(child=serializers.CharField())
    database_restored = serializers.BooleanField()
    restored_databases = serializers.ListField(child=serializers.CharField())
    skipped_volumes = serializers.DictField(
        child=serializers.CharField(), help_text="volume -> why it was not restored"
    )
    started_containers = serializers.ListField(child=serializers.CharField())
    safety_backup_id = serializers.CharField(
        allow_null=True, help_text="the backup of the state before the restore"
    )
    duration_seconds = serializers.FloatField(help_text="the whole restore, safety backup included")
    downtime_seconds = serializers.FloatField(
        help_text="from the first container stopped to the app started again (0: none stopped)"
    )
    phases = serializers.DictField(
        child=serializers.FloatField(),
        help_text="seconds per phase: validate_and_stage (one read, the app running), or "
        "validate and extract (the old order), safety_backup, stop, swap, databases, start, check",
    )
    staged_while_running = serializers.BooleanField(
        allow_null=True,
        help_text="the volumes were extracted and checked before the app was stopped; false: "
        "no room beside the live data (staged_while_running_why_not says why), the app was "
        "stopped first",
    )
    staged_while_running_why_not = serializers.CharField(
        allow_null=True, help_text="why the volumes could not be staged while the app ran"
    )
    rolled_back = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="failed: what was rolled back"
    )
    not_rolled_back = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="failed: what could not be put back, and why",
    )
    database_rollback = serializers.BooleanField(
        allow_null=True,
        help_text="null: no database is restored; true: a failure restores the databases from "
        "the safety backup; false: it could not (no safety backup, or accepted without a "
        "rollback; warnings say why)",
    )
    recreated = RecreatedSerializer(
        allow_null=True,
        required=False,
        help_text="the app had nothing on this host (a migration): what the restore created "
        "from the snapshot's record before filling it; null: nothing created (or, failed, "
        "all of it removed again)",
    )
    warnings = serializers.ListField(
        child=serializers.CharField(),
        help_text="what the operator should know about this restore (no database rollback; "
        "restored, but old data left to delete, and where)",
    )


# -- tasks ----------------------------------------------------------------------


class TaskSerializer(serializers.Serializer):
    task_id = serializers.UUIDField(source="pk")
    operation = serializers.ChoiceField(choices=Run.Operation.choices)
    app_id = serializers.CharField()
    backup_id = serializers.SerializerMethodField()
    state = serializers.ChoiceField(choices=Run.State.choices)
    phase = serializers.CharField()
    bytes_done = serializers.IntegerField()
    bytes_total = serializers.IntegerField(allow_null=True)
    progress = serializers.SerializerMethodField()
    result = serializers.DictField(help_text="the operation's result once completed")
    error = serializers.CharField(help_text="why it failed; empty otherwise")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_backup_id(self, run: Run) -> str | None:
        if run.snapshot is not None:
            return run.snapshot.backup_id
        return (run.result or {}).get("backup_id")

    @extend_schema_field(OpenApiTypes.DOUBLE)
    def get_progress(self, run: Run) -> float | None:
        """0..1 when the total is known."""
        if run.state == Run.State.COMPLETED:
            return 1.0
        if not run.bytes_total:
            return None
        return round(min(run.bytes_done / run.bytes_total, 1.0), 4)


class RestoreTaskSerializer(TaskSerializer):
    """A restore's task, its result typed (for the schema: the view writes
    TaskSerializer's data, which passes the result through as it is)."""

    result = RestoreResultSerializer(help_text="what was restored, as far as it went")


# -- apps and storage ------------------------------------------------------------


class ContainerSerializer(serializers.Serializer):
    name = serializers.CharField()
    service = serializers.CharField()
    image = serializers.CharField()
    state = serializers.CharField()
    one_off = serializers.BooleanField(help_text="an init container, not part of what runs")


class VolumeSerializer(serializers.Serializer):
    name = serializers.CharField()
    size_bytes = serializers.IntegerField(allow_null=True, help_text="null unless measured")


class DatabaseSerializer(serializers.Serializer):
    # Credentials are never shown: only which engine and which databases.
    container = serializers.CharField(source="container.name")
    service = serializers.CharField(source="container.service")
    engine = serializers.CharField()
    databases = serializers.ListField(child=serializers.CharField())


class ConfigFileSerializer(serializers.Serializer):
    name = serializers.CharField(source="archive_name")
    path = serializers.CharField()


class BackupStatsSerializer(serializers.Serializer):
    snapshots = serializers.IntegerField(help_text="completed snapshots")
    size_bytes = serializers.IntegerField()
    last_backup_at = serializers.DateTimeField(allow_null=True)


class AppSerializer(serializers.Serializer):
    app_id = serializers.CharField()
    present = serializers.BooleanField(
        help_text="false: nothing of the app is on this Docker host; its snapshots remain"
    )
    host_id = serializers.CharField(
        allow_null=True, help_text="the Docker host it is on (for an absent app: where it was)"
    )
    host_online = serializers.SerializerMethodField()
    inventory_age_seconds = serializers.SerializerMethodField()
    inventory_stale = serializers.SerializerMethodField()
    working_dir = serializers.CharField(allow_null=True)
    containers = ContainerSerializer(many=True)
    volumes = VolumeSerializer(many=True)
    databases = DatabaseSerializer(many=True)
    config_files = ConfigFileSerializer(many=True)
    backups = BackupStatsSerializer()
    last_drill = serializers.SerializerMethodField()

    @extend_schema_field(serializers.DictField(allow_null=True))
    def get_last_drill(self, app: Any) -> dict[str, Any] | None:
        """The app's last finished restore drill (drills app), null if none;
        from the context's `last_drills` when the list loaded them at once."""
        loaded = self.context.get("last_drills")
        if loaded is not None:
            return loaded.get(app.app_id)
        return drills_selectors.last_app_drill(app.app_id)

    @extend_schema_field(serializers.BooleanField(allow_null=True))
    def get_host_online(self, app: Any) -> bool | None:
        """Whether its host's worker heartbeats; null for an absent app."""
        return None if app.host is None else app.host.online

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_inventory_age_seconds(self, app: Any) -> float | None:
        """Seconds since its host's worker last reported this inventory."""
        return None if app.host is None else app.host.inventory_age_seconds

    @extend_schema_field(serializers.BooleanField(allow_null=True))
    def get_inventory_stale(self, app: Any) -> bool | None:
        """True when the inventory is older than BACKUP_INVENTORY_STALE_SECONDS."""
        return None if app.host is None else app.host.inventory_stale


class AppListSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    apps = AppSerializer(many=True)


class AppListQuery(serializers.Serializer):
    host_id = host_id_field("only this host's")


class AppQuery(AppListQuery):
    host_id = host_id_field("needed when the app id is on several hosts")
    # Kept so existing callers are not refused: every volume's size is now
    # measured by its host's worker (fleet/volume_sizes.py).
    sizes = serializers.BooleanField(
        default=False,
        help_text="ignored: each host's worker measures the sizes, every "
        "BACKUP_VOLUME_SIZE_INTERVAL_SECONDS",
    )


class HostSerializer(serializers.Serializer):
    host_id = serializers.CharField(source="host.id")
    hostname = serializers.CharField(source="host.hostname")
    docker_version = serializers.CharField(source="host.docker_version")
    worker_version = serializers.CharField(source="host.worker_version")
    queues = serializers.ListField(child=serializers.CharField(), source="host.queues")
    online = serializers.BooleanField()
    last_heartbeat = serializers.DateTimeField(source="host.last_heartbeat", allow_null=True)
    heartbeat_age_seconds = serializers.FloatField(allow_null=True)
    inventory_at = serializers.DateTimeField(source="host.inventory_at", allow_null=True)
    inventory_age_seconds = serializers.FloatField(allow_null=True)
    inventory_stale = serializers.BooleanField()
    inventory_error = serializers.CharField(source="host.inventory_error")
    apps = serializers.IntegerField(help_text="apps in its last inventory")


class HostListSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    hosts = HostSerializer(many=True)


class UsageSerializer(serializers.Serializer):
    snapshots = serializers.IntegerField()
    size_bytes = serializers.IntegerField()


class AppUsageSerializer(UsageSerializer):
    app_id = serializers.CharField()


class LocationUsageSerializer(UsageSerializer):
    name = serializers.CharField()
    configured = serializers.BooleanField()
    free_bytes = serializers.IntegerField(allow_null=True)


class StorageQuery(serializers.Serializer):
    host_id = host_id_field(
        "only the snapshots this host made; the local disk's free space is null unless it is "
        "the API's own host (each host has its own local disk)"
    )


class StorageUsageSerializer(serializers.Serializer):
    total_bytes = serializers.IntegerField(help_text="bytes kept by completed snapshots")
    snapshots = serializers.IntegerField()
    free_bytes = serializers.IntegerField(
        allow_null=True, help_text="free space of the default location (local)"
    )
    apps = AppUsageSerializer(many=True)
    locations = LocationUsageSerializer(many=True)
