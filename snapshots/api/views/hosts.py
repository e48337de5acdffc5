"""GET hosts: the Docker hosts of the fleet, online or not, with the age of
their inventory. POST hosts/<host_id>/refresh: ask that host's worker for a
new inventory now (a message to its queue host.<id>)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from fleet import selectors as fleet_selectors
from fleet.selectors import HOST_ID_PATTERN
from fleet.services_web import request_refresh
from snapshots.api.envelope import reply
from snapshots.api.schema import envelope, responses
from snapshots.api.scopes import OPERATE, READ
from snapshots.api.serializers import HostListSerializer
from snapshots.api.views.base import ApiView

HOST_ID_PARAMETER = OpenApiParameter(
    "host_id", str, OpenApiParameter.PATH, pattern=f"^{HOST_ID_PATTERN}$",
    description="a worker's BACKUP_HOST_ID",
)  # fmt: skip


class HostListView(ApiView):
    required_scope = READ

    @extend_schema(
        tags=["hosts"],
        operation_id="hosts_list",
        summary="List Docker hosts",
        description="Every host whose worker ever reported: online while it heartbeats "
        "(BACKUP_HOST_OFFLINE_SECONDS), its inventory stale past BACKUP_INVENTORY_STALE_SECONDS.",
        responses=responses({200: envelope("HostListEnvelope", HostListSerializer())}),
    )
    def get(self, request: Request) -> Response:
        hosts = fleet_selectors.list_hosts()
        return reply(HostListSerializer({"total": len(hosts), "hosts": hosts}).data)


class HostRefreshView(ApiView):
    required_scope = OPERATE

    @extend_schema(
        tags=["hosts"],
        operation_id="hosts_refresh",
        summary="Ask a host for a new inventory",
        description="Queues fleet.refresh_inventory on host.<host_id>; its worker rewrites the "
        "host's inventory (watch inventory_at in GET hosts).",
        parameters=[HOST_ID_PARAMETER],
        request=None,
        responses=responses(
            {
                202: envelope(
                    "HostRefreshEnvelope",
                    inline_serializer(
                        "HostRefresh",
                        {"host_id": serializers.CharField(), "queue": serializers.CharField()},
                    ),
                )
            },
            404,
            503,
        ),
    )
    def post(self, request: Request, host_id: str) -> Response:
        queue = request_refresh(host_id)
        return reply({"host_id": host_id, "queue": queue}, 202, "inventory refresh queued")
