"""GET /metrics: the Prometheus text format, read from the database now."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from monitoring import access
from monitoring.metrics import render


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = access.check(request)
    if refusal is not None:
        response = JsonResponse(
            {"code": refusal.status, "message": refusal.message, "data": None},
            status=refusal.status,
        )
        if refusal.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)
