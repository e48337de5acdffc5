"""schedules: list (?app_id=) and create; one schedule: read, change,
delete; run now. Each shows its next run, last run and last result."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from schedules import selectors, services
from schedules.api.schedule_serializers import (
    DeletedScheduleSerializer,
    FiringSerializer,
    ScheduleListQuery,
    ScheduleListSerializer,
    ScheduleSerializer,
    ScheduleWriteSerializer,
    schedule_data,
)
from schedules.models import Schedule
from snapshots.api.envelope import reply
from snapshots.api.schema import envelope, responses
from snapshots.api.scopes import OPERATE, READ
from snapshots.api.views.base import ApiView
from snapshots.selectors import Conflict

SCHEDULE_ID_PARAMETER = OpenApiParameter(
    "schedule_id", int, OpenApiParameter.PATH, description="the schedule's id"
)
TAGS = ["schedules"]


def _shown(schedule: Schedule) -> dict[str, Any]:
    return ScheduleSerializer(schedule_data(schedule, selectors.schedule_state(schedule))).data


def _body(request: Request, partial: bool) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ValidationError({"body": ["expected a JSON object"]})
    unknown = sorted(set(request.data) - set(ScheduleWriteSerializer().fields))
    if unknown:
        raise ValidationError({name: ["unknown field"] for name in unknown})
    serializer = ScheduleWriteSerializer(data=request.data, partial_update=partial, partial=partial)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _invalid(exc: services.ScheduleInvalid) -> ValidationError:
    return ValidationError({field: [message] for field, message in exc.errors.items()})


class ScheduleListView(ApiView):
    required_scope = {"get": READ, "post": OPERATE}

    query_serializers = {"get": ScheduleListQuery}

    @extend_schema(
        tags=TAGS, operation_id="schedules_list", summary="List schedules",
        parameters=[ScheduleListQuery],
        responses=responses({200: envelope("ScheduleListEnvelope", ScheduleListSerializer())}, 400),
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        query = self.query
        rows = [
            _shown(s) for s in selectors.list_schedules(query.get("app_id"), query.get("host_id"))
        ]
        return reply({"total": len(rows), "schedules": rows})

    @extend_schema(
        tags=TAGS, operation_id="schedules_create", summary="Create a schedule",
        description="Backs APP_ID up on a timetable (daily, weekly, monthly or a cron "
        "expression, in the schedule's timezone). 400 names the wrong field.",
        request=ScheduleWriteSerializer,
        responses=responses(
            {201: envelope("ScheduleEnvelope", ScheduleSerializer())}, 400, 409, 503
        ),
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        try:
            schedule = services.create_schedule(_body(request, partial=False))
        except services.ScheduleInvalid as exc:
            raise _invalid(exc) from None
        return reply(_shown(schedule), status=201, message="schedule created")


class ScheduleDetailView(ApiView):
    required_scope = {"get": READ, "patch": OPERATE, "delete": OPERATE}

    @extend_schema(
        tags=TAGS, operation_id="schedules_retrieve", summary="One schedule",
        parameters=[SCHEDULE_ID_PARAMETER],
        responses=responses({200: envelope("ScheduleEnvelope", ScheduleSerializer())}, 404),
    )  # fmt: skip
    def get(self, request: Request, schedule_id: str) -> Response:
        return reply(_shown(selectors.get_schedule(schedule_id)))

    @extend_schema(
        tags=TAGS, operation_id="schedules_partial_update", summary="Change a schedule",
        parameters=[SCHEDULE_ID_PARAMETER], request=ScheduleWriteSerializer,
        responses=responses(
            {200: envelope("ScheduleEnvelope", ScheduleSerializer())}, 400, 404, 409
        ),
    )  # fmt: skip
    def patch(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.get_schedule(schedule_id)
        try:
            schedule = services.update_schedule(schedule, _body(request, partial=True))
        except services.ScheduleInvalid as exc:
            raise _invalid(exc) from None
        return reply(_shown(schedule), message="schedule updated")

    @extend_schema(
        tags=TAGS, operation_id="schedules_destroy", summary="Delete a schedule",
        description="Its snapshots stay; only the timetable goes.",
        parameters=[SCHEDULE_ID_PARAMETER],
        responses=responses(
            {200: envelope("DeletedScheduleEnvelope", DeletedScheduleSerializer())}, 404
        ),
    )  # fmt: skip
    def delete(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.get_schedule(schedule_id)
        pk, app_id = schedule.pk, schedule.app_id
        services.delete_schedule(schedule)
        data = {"id": pk, "app_id": app_id, "deleted": True}
        return reply(DeletedScheduleSerializer(data).data, message="schedule deleted")


class ScheduleRunView(ApiView):
    required_scope = OPERATE

    @extend_schema(
        tags=TAGS, operation_id="schedules_run", summary="Run a schedule now",
        description="A backup with the schedule's settings, now (no jitter). 409 if this "
        "schedule already has a run for the current minute.",
        parameters=[SCHEDULE_ID_PARAMETER], request=None,
        responses=responses({202: envelope("FiringEnvelope", FiringSerializer())}, 404, 409),
    )  # fmt: skip
    def post(self, request: Request, schedule_id: str) -> Response:
        schedule = selectors.get_schedule(schedule_id)
        try:
            firing = services.run_now(schedule)
        except services.AlreadyFiring as exc:
            raise Conflict(str(exc)) from None
        return reply(FiringSerializer(firing).data, status=202, message="backup queued")
