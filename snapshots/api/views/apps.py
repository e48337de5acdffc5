"""GET apps, GET apps/<app_id>: the apps on this Docker host (and the apps
known only from their snapshots, marked present=false)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from snapshots import selectors
from snapshots.api.envelope import reply
from snapshots.api.schema import APP_ID_PARAMETER, envelope, responses
from snapshots.api.scopes import READ
from snapshots.api.serializers import AppListSerializer, AppQuery, AppSerializer
from snapshots.api.views.base import ApiView


class AppListView(ApiView):
    required_scope = READ

    @extend_schema(
        tags=["apps"],
        operation_id="apps_list",
        summary="List apps",
        description="Compose projects on this Docker host with their containers, volumes and "
        "databases, plus apps that have snapshots but nothing on the host any more.",
        responses=responses({200: envelope("AppListEnvelope", AppListSerializer())}, 503),
    )
    def get(self, request: Request) -> Response:
        apps = selectors.list_apps()
        return reply(AppListSerializer({"total": len(apps), "apps": apps}).data)


class AppDetailView(ApiView):
    required_scope = READ

    query_serializers = {"get": AppQuery}

    @extend_schema(
        tags=["apps"],
        operation_id="apps_retrieve",
        summary="One app",
        parameters=[APP_ID_PARAMETER, AppQuery],
        responses=responses({200: envelope("AppEnvelope", AppSerializer())}, 400, 404, 503),
    )
    def get(self, request: Request, app_id: str) -> Response:
        app = selectors.get_app_summary(app_id, measure_sizes=self.query["sizes"])
        return reply(AppSerializer(app).data)
