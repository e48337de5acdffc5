"""GET storage: bytes used in total, per app and per location, and free space."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from snapshots import selectors
from snapshots.api.envelope import reply
from snapshots.api.schema import envelope, responses
from snapshots.api.scopes import READ
from snapshots.api.serializers import StorageQuery, StorageUsageSerializer
from snapshots.api.views.base import ApiView
from snapshots.selectors_offsite import location_usage


class StorageView(ApiView):
    required_scope = READ
    query_serializers = {"get": StorageQuery}

    @extend_schema(
        tags=["storage"],
        operation_id="storage_retrieve",
        summary="Storage usage",
        description="Totals and per app count each completed snapshot once. `locations` lists "
        "every location: each backend (`local`, each S3 location) with the snapshots that "
        "have a copy there (an off-site copy once verified; S3 has no free space: null), then "
        "each compound (`local+s3`) and each location the rows name but no longer configured, "
        "with the snapshots stored so.",
        parameters=[StorageQuery],
        responses=responses({200: envelope("StorageUsageEnvelope", StorageUsageSerializer())}, 400),
    )
    def get(self, request: Request) -> Response:
        host_id = self.query.get("host_id")
        usage = selectors.storage_usage(host_id)
        usage["locations"] = location_usage(host_id)
        return reply(StorageUsageSerializer(usage).data)
