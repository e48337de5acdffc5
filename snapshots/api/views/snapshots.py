"""snapshots: list (filtered, sorted, paginated) and create; one snapshot:
read and delete."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from snapshots import selectors
from snapshots.api.envelope import reply
from snapshots.api.schema import BACKUP_ID_PARAMETER, envelope, responses
from snapshots.api.scopes import ADMIN, OPERATE, READ
from snapshots.api.serializers import (
    BackupRequestSerializer,
    DeletedSnapshotSerializer,
    SnapshotDetailSerializer,
    SnapshotListQuery,
    SnapshotPageSerializer,
    TaskAcceptedSerializer,
)
from snapshots.api.views.base import ApiView, accepted
from snapshots.selectors_offsite import where
from snapshots.services.snapshots import delete_snapshot, start_backup


class SnapshotListView(ApiView):
    required_scope = {"get": READ, "post": OPERATE}

    query_serializers = {"get": SnapshotListQuery}

    @extend_schema(
        tags=["snapshots"],
        operation_id="snapshots_list",
        summary="List snapshots",
        parameters=[SnapshotListQuery],
        responses=responses({200: envelope("SnapshotPageEnvelope", SnapshotPageSerializer())}, 400),
    )
    def get(self, request: Request) -> Response:
        query = dict(self.query)
        sort, page, page_size = query.pop("sort"), query.pop("page"), query.pop("page_size")
        result = selectors.list_snapshots(
            selectors.SnapshotFilters(**query), sort=sort, page=page, page_size=page_size
        )
        return reply(SnapshotPageSerializer(result).data)

    @extend_schema(
        tags=["snapshots"],
        operation_id="snapshots_create",
        summary="Back an app up now",
        description='Queues a backup; poll tasks/<task_id>. backup_type "incremental" writes '
        "only what changed since the app's latest backup; it is full when that backup failed "
        "or is missing, for the app's first backup, and after the app's "
        "incrementals_before_full incrementals (7 by default). The snapshot's kind says which. "
        "It goes to the queue of the app's host: an app id on several hosts without "
        "host_id is a 409 listing them; an offline host a 503.",
        request=BackupRequestSerializer,
        responses=responses(
            {202: envelope("TaskAcceptedEnvelope", TaskAcceptedSerializer())}, 400, 404, 409, 503
        ),
    )
    def post(self, request: Request) -> Response:
        body = self.valid(BackupRequestSerializer, request.data)
        run = start_backup(
            body["app_id"], encrypt=body["encrypt"], storage_location=body["storage_location"],
            backup_type=body["backup_type"],
            host_id=body.get("host_id"),
        )  # fmt: skip
        return accepted(run, "backup queued")


class SnapshotDetailView(ApiView):
    required_scope = {"get": READ, "delete": ADMIN}

    @extend_schema(
        tags=["snapshots"],
        operation_id="snapshots_retrieve",
        summary="One snapshot",
        parameters=[BACKUP_ID_PARAMETER],
        responses=responses({200: envelope("SnapshotEnvelope", SnapshotDetailSerializer())}, 404),
    )
    def get(self, request: Request, backup_id: str) -> Response:
        snapshot = selectors.get_snapshot(backup_id)
        children = selectors.children_of(snapshot)
        context = {"children": children, "copies": where(snapshot)}
        return reply(SnapshotDetailSerializer(snapshot, context=context).data)

    @extend_schema(
        tags=["snapshots"],
        operation_id="snapshots_destroy",
        summary="Delete a snapshot",
        description="Removes the archive, its .sha256 sidecar and the row. Refused (409) while "
        "another snapshot depends on it or a task uses it.",
        parameters=[BACKUP_ID_PARAMETER],
        responses=responses(
            {200: envelope("DeletedSnapshotEnvelope", DeletedSnapshotSerializer())}, 404, 409
        ),
    )
    def delete(self, request: Request, backup_id: str) -> Response:
        deleted = delete_snapshot(selectors.get_snapshot(backup_id))
        return reply(DeletedSnapshotSerializer(deleted).data, message="snapshot deleted")
