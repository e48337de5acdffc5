"""POST snapshots/<backup_id>/drill and apps/<app_id>/drill (202, a task),
GET drills."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from drills import selectors
from drills.api.serializers import DrillListQuery, DrillListSerializer
from drills.models import Drill
from drills.services.requests import start_drill
from snapshots import selectors as snapshot_selectors
from snapshots.api.envelope import reply
from snapshots.api.schema import APP_ID_PARAMETER, BACKUP_ID_PARAMETER, envelope, responses
from snapshots.api.serializers import TaskAcceptedSerializer
from snapshots.api.views.base import ApiView, accepted
from snapshots.models import Run


class SnapshotDrillView(ApiView):
    required_scope = "operate"  # as a verify: it reads the archive, changes no app

    @extend_schema(
        tags=["snapshots"],
        operation_id="snapshots_drill",
        summary="Restore-drill a snapshot",
        description="Deep verify, then each database dump restored into a throwaway container "
        "(same image as the app's database, no network) and checked: the server starts, every "
        "database exists, every table has the rows counted at backup time. The app is never "
        "touched. A task (202); the result is on the snapshot's last_drill and GET drills.",
        parameters=[BACKUP_ID_PARAMETER],
        request=None,
        responses=responses(
            {202: envelope("DrillAcceptedEnvelope", TaskAcceptedSerializer())}, 404, 409, 503
        ),
    )
    def post(self, request: Request, backup_id: str) -> Response:
        return _queued(start_drill(snapshot_selectors.get_snapshot(backup_id)))


class AppDrillView(ApiView):
    required_scope = "operate"

    @extend_schema(
        tags=["apps"],
        operation_id="apps_drill",
        summary="Restore-drill an app's latest snapshot",
        description="The drill of snapshots/<id>/drill, of the app's newest completed snapshot "
        "(safety backups taken before a restore are not counted). That is also the tip of the "
        "app's chain (a drill restores dumps, which every incremental holds whole). 404 when "
        "the app has no completed "
        "snapshot. The accepted task names the snapshot it drills (backup_id).",
        parameters=[APP_ID_PARAMETER],
        request=None,
        responses=responses(
            {202: envelope("AppDrillAcceptedEnvelope", TaskAcceptedSerializer())}, 404, 409, 503
        ),
    )
    def post(self, request: Request, app_id: str) -> Response:
        return _queued(start_drill(selectors.get_latest_snapshot(app_id)))


def _queued(drill: Drill) -> Response:
    run = Run.objects.select_related("snapshot").get(pk=drill.pk)
    return accepted(run, f"restore drill of {drill.backup_id} queued")


class DrillListView(ApiView):
    required_scope = "read"
    query_serializers = {"get": DrillListQuery}

    @extend_schema(
        tags=["drills"],
        operation_id="drills_list",
        summary="Restore drills, newest first",
        parameters=[DrillListQuery],
        responses=responses({200: envelope("DrillListEnvelope", DrillListSerializer())}, 400),
    )
    def get(self, request: Request) -> Response:
        rows = selectors.list_drills(self.query.get("snapshot_id"), self.query.get("app_id"))
        data = {"total": rows.count(), "drills": list(rows[: self.query["limit"]])}
        return reply(DrillListSerializer(data).data)
