"""Notifications API: an app's target list (URLs write-only, read back
masked), a test send answered now, and the list of Notification rows."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from schedules.models import AppNotificationTargets, Notification, Schedule
from schedules.notifications import NoTargets, send_test
from schedules.secrets import (
    SecretsUnavailable,
    encrypt_targets,
    masked,
    scrub,
    validate_targets,
)
from snapshots.api.envelope import reply
from snapshots.api.schema import APP_ID_PARAMETER, envelope, responses
from snapshots.api.scopes import OPERATE, READ
from snapshots.api.serializers import APP_ID_PATTERN
from snapshots.api.views.base import ApiView
from snapshots.selectors import Conflict, NotFound

TAGS = ["notifications"]


class TargetsWriteSerializer(serializers.Serializer):
    targets = serializers.ListField(
        child=serializers.CharField(max_length=2048, trim_whitespace=True),
        max_length=20,
        help_text="Apprise URLs, e.g. mailto://user:pass@smtp.example.com, json://host/path; "
        "write-only: they are stored encrypted and shown back masked",
    )
    notify_on_success = serializers.BooleanField(required=False, default=False)


class TargetsSerializer(serializers.Serializer):
    app_id = serializers.CharField()
    targets = serializers.ListField(child=serializers.CharField(), help_text="masked")
    notify_on_success = serializers.BooleanField()


class TestRequestSerializer(serializers.Serializer):
    schedule_id = serializers.IntegerField(required=False, min_value=1)
    app_id = serializers.RegexField(APP_ID_PATTERN, required=False, max_length=128)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("schedule_id" in attrs) == ("app_id" in attrs):
            raise ValidationError("give exactly one of schedule_id and app_id")
        return attrs


class TargetOutcomeSerializer(serializers.Serializer):
    target = serializers.CharField(help_text="masked")
    ok = serializers.BooleanField()
    status = serializers.ChoiceField(choices=["sent", "failed", "timeout", "invalid"])
    error = serializers.CharField(allow_blank=True)


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = [
            "id", "event", "app_id", "schedule_id", "title", "body", "state", "attempts",
            "targets", "error", "created_at", "sent_at",
        ]  # fmt: skip

    schedule_id = serializers.IntegerField(allow_null=True)
    targets = serializers.ListField(child=serializers.CharField(), help_text="masked")


class TestResultSerializer(serializers.Serializer):
    notification = NotificationSerializer()
    targets = TargetOutcomeSerializer(many=True)


class NotificationListQuery(serializers.Serializer):
    app_id = serializers.RegexField(APP_ID_PATTERN, required=False, max_length=128)
    event = serializers.ChoiceField(choices=Notification.Event.choices, required=False)
    state = serializers.ChoiceField(choices=Notification.State.choices, required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=100)


# fullmatch: the pattern's "$" would also accept a trailing newline.
_APP_ID = re.compile(APP_ID_PATTERN.removeprefix("^").removesuffix("$"))


def _valid_app_id(app_id: str) -> str:
    if len(app_id) > 128 or not _APP_ID.fullmatch(app_id):
        raise NotFound("not an app id: expected a Compose project name")
    return app_id


def _shown(app_id: str) -> dict[str, Any]:
    row = AppNotificationTargets.objects.filter(app_id=app_id).first()
    return {
        "app_id": app_id,
        "targets": masked(row.targets_encrypted) if row else [],
        "notify_on_success": bool(row and row.notify_on_success),
    }


class AppNotificationsView(ApiView):
    required_scope = {"get": READ, "put": OPERATE}

    @extend_schema(
        tags=TAGS,
        operation_id="notifications_app_targets",
        summary="An app's notification targets (masked)",
        parameters=[APP_ID_PARAMETER],
        responses=responses({200: envelope("AppTargetsEnvelope", TargetsSerializer())}, 404),
    )
    def get(self, request: Request, app_id: str) -> Response:
        return reply(_shown(_valid_app_id(app_id)))

    @extend_schema(
        tags=TAGS,
        operation_id="notifications_app_targets_set",
        summary="Replace an app's notification targets",
        description="The URLs are checked with Apprise, stored encrypted and never shown back "
        "in full. An empty list removes them. Schedules without targets of their own use these.",
        parameters=[APP_ID_PARAMETER],
        request=TargetsWriteSerializer,
        responses=responses({200: envelope("AppTargetsEnvelope", TargetsSerializer())}, 400, 404),
    )
    def put(self, request: Request, app_id: str) -> Response:
        app_id = _valid_app_id(app_id)
        body = self.valid(TargetsWriteSerializer, request.data)
        try:
            urls = validate_targets(body["targets"])
        except ValueError as exc:
            raise ValidationError({"targets": [str(exc)]}) from None
        AppNotificationTargets.objects.update_or_create(
            app_id=app_id,
            defaults={
                "targets_encrypted": encrypt_targets(urls),
                "notify_on_success": body["notify_on_success"],
            },
        )
        return reply(_shown(app_id), message="notification targets saved")


class NotificationTestView(ApiView):
    required_scope = OPERATE

    @extend_schema(
        tags=TAGS,
        operation_id="notifications_test",
        summary="Send a test notification now",
        description='{"schedule_id": N} (its targets, else its app\'s) or {"app_id": "..."}. '
        "Answers what each target said (masked); the send is recorded as a test Notification.",
        request=TestRequestSerializer,
        responses=responses(
            {200: envelope("TestResultEnvelope", TestResultSerializer())}, 400, 404, 409
        ),
    )
    def post(self, request: Request) -> Response:
        body = self.valid(TestRequestSerializer, request.data)
        try:
            attempt = send_test(schedule_id=body.get("schedule_id"), app_id=body.get("app_id"))
        except Schedule.DoesNotExist:
            raise NotFound(f"no schedule {body.get('schedule_id')}") from None
        except (NoTargets, SecretsUnavailable) as exc:
            raise Conflict(str(exc)) from None
        outcomes = [outcome.as_dict() for outcome in attempt.outcomes]
        failed = sum(1 for outcome in outcomes if not outcome["ok"])
        message = (
            f"test notification sent to {len(outcomes)} target(s)"
            if not failed
            else f"test notification failed for {failed} of {len(outcomes)} target(s)"
        )
        data = {
            "notification": NotificationSerializer(attempt.notification).data,
            "targets": outcomes,
        }
        return reply(data, message=scrub(message))


class NotificationListView(ApiView):
    required_scope = READ

    query_serializers = {"get": NotificationListQuery}

    @extend_schema(
        tags=TAGS,
        operation_id="notifications_list",
        summary="Notifications sent (or tried), newest first",
        parameters=[NotificationListQuery],
        responses=responses(
            {200: envelope("NotificationListEnvelope", NotificationSerializer(many=True))}, 400
        ),
    )
    def get(self, request: Request) -> Response:
        query = dict(self.query)
        rows = Notification.objects.all()
        for name in ("app_id", "event", "state"):
            if query.get(name):
                rows = rows.filter(**{name: query[name]})
        rows = rows.order_by("-created_at", "-id")[: query["limit"]]
        return reply(NotificationSerializer(rows, many=True).data)
