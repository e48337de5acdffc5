"""The drills' API shapes."""

from __future__ import annotations

from rest_framework import serializers


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
    snapshot_id = serializers.CharField(required=False, max_length=64)
    app_id = serializers.CharField(required=False, max_length=128)
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=500)


class DrillListSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    drills = DrillSerializer(many=True)
