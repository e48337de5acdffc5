"""GET storage: bytes used in total, per app and per location, and free space."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from snapshots import selectors
from snapshots.api.envelope import reply
from snapshots.api.schema import envelope, responses
from snapshots.api.serializers import StorageUsageSerializer
from snapshots.api.views.base import ApiView


class StorageView(ApiView):
    @extend_schema(
        tags=["storage"],
        operation_id="storage_retrieve",
        summary="Storage usage",
        responses=responses({200: envelope("StorageUsageEnvelope", StorageUsageSerializer())}),
    )
    def get(self, request: Request) -> Response:
        return reply(StorageUsageSerializer(selectors.storage_usage()).data)
