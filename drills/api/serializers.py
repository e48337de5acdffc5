"""The drills' API shapes."""

from __future__ import annotations

from rest_framework import serializers

from snapshots.api.serializers import APP_ID_PATTERN
from snapshots.selectors import BACKUP_ID


class DrillSerializer(serializers.Serializer):
    drill_id = serializers.UUIDField(source="pk", help_text="also its task id: GET tasks/<id>")
    backup_id = serializers.CharField()
    app_id = serializers.CharField()
    host_id = serializers.CharField()
    schedule_id = serializers.IntegerField(allow_null=True)
    state = serializers.CharField(help_text="pending, running, finished")
    outcome = serializers.CharField(help_text="passed, failed, skipped; empty until finished")
    reason = serializers.CharField(help_text="why it failed or was skipped, naming the table")
    databases = serializers.ListField(
        child=serializers.DictField(),
        help_text="per database: container, engine, image, database, ok, tables, rows, "
        "tables_recorded, rows_recorded, counts_recorded, mismatches, seconds",
    )
    verify = serializers.DictField(help_text="the deep verify's findings")
    duration_seconds = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class DrillListQuery(serializers.Serializer):
    # Patterns, as the snapshots' filters have: the schema then says which ids
    # exist, and a value no id can match (a NUL byte) is a 400 it predicts.
    snapshot_id = serializers.RegexField(f"^{BACKUP_ID.pattern}$", required=False, max_length=64)
    app_id = serializers.RegexField(APP_ID_PATTERN, required=False, max_length=128)
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=500)


class DrillListSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    drills = DrillSerializer(many=True)
