"""GET retention/preview?app_id=: what retention would remove now and why,
how many bytes that frees, and what stays and why. Deletes nothing."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from engine.discovery import validate_app_id
from engine.errors import AppNotFound
from schedules.retention_service import RetentionOutcome, app_is_known, plan_retention
from snapshots.api.envelope import reply
from snapshots.api.schema import envelope, responses
from snapshots.api.scopes import READ
from snapshots.api.views.base import ApiView


class RetentionPreviewQuery(serializers.Serializer):
    app_id = serializers.CharField(max_length=128, help_text="the app (Compose project name)")

    def validate_app_id(self, value: str) -> str:
        try:
            validate_app_id(value)
        except AppNotFound as exc:
            raise serializers.ValidationError(str(exc)) from exc
        if not app_is_known(value):
            raise serializers.ValidationError(
                f"unknown app {value!r}: it has no schedule or snapshot"
            )
        return value


class RetentionDecisionSerializer(serializers.Serializer):
    backup_id = serializers.CharField()
    created_at = serializers.DateTimeField(help_text="the time retention reads (UTC)")
    status = serializers.CharField()
    purpose = serializers.CharField()
    parent_backup_id = serializers.CharField(allow_null=True)
    size_bytes = serializers.IntegerField()
    verified = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField(), help_text="why, every rule")


class RetentionPolicySerializer(serializers.Serializer):
    schedule = serializers.CharField(source="label")
    timezone = serializers.CharField()
    retention_days = serializers.IntegerField(allow_null=True)
    keep_last = serializers.IntegerField(allow_null=True)
    keep_daily = serializers.IntegerField(allow_null=True)
    keep_weekly = serializers.IntegerField(allow_null=True)
    keep_monthly = serializers.IntegerField(allow_null=True)
    keep_yearly = serializers.IntegerField(allow_null=True)


class RetentionPreviewSerializer(serializers.Serializer):
    app_id = serializers.CharField()
    decided_at = serializers.DateTimeField()
    policies = RetentionPolicySerializer(many=True)
    failed_days = serializers.IntegerField(help_text="failed snapshots are removed this old")
    pre_restore_days = serializers.IntegerField(help_text="safety snapshots are removed this old")
    remove_count = serializers.IntegerField()
    keep_count = serializers.IntegerField()
    freed_bytes = serializers.IntegerField(
        help_text="the archives' sizes as recorded (sidecars, ~100 bytes each, not counted)"
    )
    remove = RetentionDecisionSerializer(many=True)
    keep = RetentionDecisionSerializer(many=True)


def preview_data(
    outcome: RetentionOutcome, failed_days: int, pre_restore_days: int
) -> dict[str, Any]:
    return {
        "app_id": outcome.app_id, "decided_at": outcome.decided_at, "policies": outcome.policies,
        "failed_days": failed_days, "pre_restore_days": pre_restore_days,
        "remove_count": len(outcome.plan.removed), "keep_count": len(outcome.plan.kept),
        "freed_bytes": outcome.freed_bytes,
        "remove": outcome.decision_rows(keep=False), "keep": outcome.decision_rows(keep=True),
    }  # fmt: skip


class RetentionPreviewView(ApiView):
    required_scope = READ

    query_serializers = {"get": RetentionPreviewQuery}

    @extend_schema(
        tags=["retention"],
        operation_id="retention_preview",
        summary="Retention preview (dry run)",
        description="What retention would remove from the app now, why, and how many bytes "
        "that frees; also what it keeps and why. Nothing is deleted.",
        parameters=[RetentionPreviewQuery],
        responses=responses(
            {200: envelope("RetentionPreviewEnvelope", RetentionPreviewSerializer())}, 400
        ),
    )
    def get(self, request: Request) -> Response:
        outcome = plan_retention(self.query["app_id"])
        data = preview_data(
            outcome,
            settings.BACKUP_RETENTION_FAILED_DAYS,
            settings.BACKUP_RETENTION_PRE_RESTORE_DAYS,
        )
        count = data["remove_count"]
        message = f"{count} snapshot(s) would be removed, freeing {data['freed_bytes']} bytes"
        return reply(RetentionPreviewSerializer(data).data, message=message)
