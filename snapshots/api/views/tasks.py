"""GET tasks/<task_id>: state, progress and result of a backup, verify or restore."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from snapshots import selectors
from snapshots.api.envelope import reply
from snapshots.api.schema import envelope, responses
from snapshots.api.scopes import READ
from snapshots.api.serializers import TaskSerializer
from snapshots.api.views.base import ApiView


class TaskDetailView(ApiView):
    required_scope = READ

    @extend_schema(
        tags=["tasks"],
        operation_id="tasks_retrieve",
        summary="A task's state and progress",
        parameters=[OpenApiParameter("task_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses=responses({200: envelope("TaskEnvelope", TaskSerializer())}, 404),
    )
    def get(self, request: Request, task_id: str) -> Response:
        return reply(TaskSerializer(selectors.get_run(task_id)).data)
