"""POST restore/<app_id>/<backup_id>: queue a restore; ?wait=true waits for it."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from snapshots import selectors
from snapshots.api.envelope import reply
from snapshots.api.schema import APP_ID_PARAMETER, BACKUP_ID_PARAMETER, envelope, responses
from snapshots.api.scopes import ADMIN
from snapshots.api.serializers import (
    RestoreQuery,
    RestoreRequestSerializer,
    RestoreTaskSerializer,
    TaskAcceptedSerializer,
    TaskSerializer,
)
from snapshots.api.views.base import ApiView, accepted
from snapshots.models import Run
from snapshots.selectors import Conflict
from snapshots.services.restore import RestoreOptions
from snapshots.services.snapshots import start_restore


def wait_seconds() -> float:
    """How long ?wait=true may hold a request; the restore goes on after.
    Keep it below gunicorn's --timeout (scripts/run.sh): a sync worker held
    longer is killed mid-request."""
    return float(settings.BACKUP_API_WAIT_SECONDS)


class RestoreView(ApiView):
    required_scope = ADMIN

    query_serializers = {"post": RestoreQuery}

    @extend_schema(
        tags=["restore"],
        operation_id="restore_create",
        summary="Restore an app from a snapshot",
        description="Checks the snapshot and queues the restore (202). With ?wait=true the "
        "answer comes when the restore ended: 200 with the completed task and its result, "
        "500 with the failed task (message: restore failed: <its error>; data: the task, its "
        "result saying what was rolled back), or 202 when the server's wait limit passed "
        "first.",
        parameters=[
            APP_ID_PARAMETER,
            BACKUP_ID_PARAMETER,
            RestoreQuery,
        ],
        request=RestoreRequestSerializer,
        responses=responses(
            {
                200: envelope("RestoreTaskEnvelope", RestoreTaskSerializer()),
                202: envelope("TaskAcceptedEnvelope", TaskAcceptedSerializer()),
                500: OpenApiResponse(
                    envelope("RestoreTaskEnvelope", RestoreTaskSerializer()),
                    description="?wait=true: the restore failed (state failed); the message "
                    "is its error",
                ),
            },
            400,
            404,
            409,
            503,
        ),
    )
    def post(self, request: Request, app_id: str, backup_id: str) -> Response:
        selectors.validate_backup_id(backup_id)
        body = self.valid(RestoreRequestSerializer, request.data)
        host_id, target = body.pop("host_id", None), body.pop("target_host_id", None)
        if host_id and target and host_id != target:
            # Each is valid alone (the schema's view): the pair conflicts.
            raise Conflict(
                f"target_host_id {target!r} differs from host_id {host_id!r}: give one host "
                "to restore on"
            )
        host_id = target or host_id
        run = start_restore(app_id, backup_id, RestoreOptions(**body), host_id=host_id)
        if not self.query["wait"]:
            return accepted(run, "restore queued")
        run = selectors.wait_for_run(str(run.pk), wait_seconds())
        if run.state not in selectors.TERMINAL_STATES:
            return accepted(run, "restore still running; poll the task")
        if run.state == Run.State.COMPLETED:
            return reply(TaskSerializer(run).data, message="restore completed")
        # A failed run is an error answer, as a failure inside this request would be.
        return reply(TaskSerializer(run).data, status=500, message=f"restore failed: {run.error}")
