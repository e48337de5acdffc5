"""GET apps, GET apps/<app_id>: the apps of every Docker host's stored
inventory (and the apps known only from their snapshots, marked
present=false). The web process never asks Docker: each host's worker
reports its inventory (fleet/)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from snapshots import selectors
from snapshots.api.app_json import list_apps_encoded
from snapshots.api.envelope import reply
from snapshots.api.schema import APP_ID_PARAMETER, envelope, responses
from snapshots.api.scopes import READ
from snapshots.api.serializers import AppListQuery, AppListSerializer, AppQuery, AppSerializer
from snapshots.api.views.base import ApiView


class AppListView(ApiView):
    required_scope = READ
    query_serializers = {"get": AppListQuery}

    @extend_schema(
        tags=["apps"],
        operation_id="apps_list",
        summary="List apps",
        description="Compose projects on every Docker host (one entry per host and app) with "
        "their containers, volumes and databases, from each host's last inventory, plus apps "
        "that have snapshots but are on no host any more.",
        parameters=[AppListQuery],
        responses=responses({200: envelope("AppListEnvelope", AppListSerializer())}, 400),
    )
    def get(self, request: Request) -> Response:
        # AppListSerializer's shape (the schema's), written directly: fast.
        return reply(list_apps_encoded(host_id=self.query.get("host_id")))


class AppDetailView(ApiView):
    required_scope = READ

    query_serializers = {"get": AppQuery}

    @extend_schema(
        tags=["apps"],
        operation_id="apps_retrieve",
        summary="One app",
        parameters=[APP_ID_PARAMETER, AppQuery],
        responses=responses({200: envelope("AppEnvelope", AppSerializer())}, 400, 404, 409),
    )
    def get(self, request: Request, app_id: str) -> Response:
        app = selectors.get_app_summary(app_id, host_id=self.query.get("host_id"))
        return reply(AppSerializer(app).data)
