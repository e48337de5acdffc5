"""POST snapshots/<backup_id>/verify: quick (answered now) or deep (a task)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from snapshots import selectors
from snapshots.api.envelope import reply
from snapshots.api.schema import BACKUP_ID_PARAMETER, envelope, responses
from snapshots.api.scopes import OPERATE
from snapshots.api.serializers import (
    TaskAcceptedSerializer,
    VerifyReportSerializer,
    VerifyRequestSerializer,
)
from snapshots.api.views.base import ApiView, accepted
from snapshots.services.snapshots import start_deep_verify, verify_now


class SnapshotVerifyView(ApiView):
    required_scope = OPERATE

    @extend_schema(
        tags=["snapshots"],
        operation_id="snapshots_verify",
        summary="Verify a snapshot without restoring it",
        description='{"deep": false}: SHA-256 of the stored file against the snapshot and its '
        "sidecar, answered now (200; valid=false when it does not match). "
        '{"deep": true}: decrypt, decompress and check every file against the manifest, as '
        "a task (202).",
        parameters=[BACKUP_ID_PARAMETER],
        request=VerifyRequestSerializer,
        responses=responses(
            {
                200: envelope("VerifyReportEnvelope", VerifyReportSerializer()),
                202: envelope("TaskAcceptedEnvelope", TaskAcceptedSerializer()),
            },
            400,
            404,
            409,
            503,
        ),
    )
    def post(self, request: Request, backup_id: str) -> Response:
        snapshot = selectors.get_snapshot(backup_id)
        body = self.valid(VerifyRequestSerializer, request.data)
        if body["deep"]:
            return accepted(start_deep_verify(snapshot), "deep verification queued")
        run = verify_now(snapshot)
        if run.state not in selectors.TERMINAL_STATES:  # on the host that holds it, still going
            return accepted(run, f"quick verification running on host {run.host_id}; poll the task")
        report = VerifyReportSerializer(VerifyReportSerializer.from_run(run, backup_id)).data
        message = "snapshot is valid" if report["valid"] else "snapshot is NOT valid"
        return reply(report, message=message)
