"""OpenAPI pieces shared by the views: the envelope around each payload and
the error responses, so the schema shows exactly what goes over the wire."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from snapshots.api.serializers import APP_ID_PATTERN
from snapshots.selectors import BACKUP_ID

BACKUP_ID_PARAMETER = OpenApiParameter(
    "backup_id", str, OpenApiParameter.PATH, pattern=f"^{BACKUP_ID.pattern}$",
    description="e.g. backup_20260105_103000_3fa2c1",
)  # fmt: skip
APP_ID_PARAMETER = OpenApiParameter(
    "app_id", str, OpenApiParameter.PATH, pattern=APP_ID_PATTERN,
    description="the Compose project name, e.g. wordpress_ab12c",
)  # fmt: skip

_cache: dict[str, serializers.Serializer] = {}


def envelope(name: str, data: serializers.Field) -> serializers.Serializer:
    """{"code", "message", "data": DATA} as the component NAME (built once:
    two components with one name and different fields would be an error)."""
    if name not in _cache:
        _cache[name] = inline_serializer(
            name=name,
            fields={
                "code": serializers.IntegerField(help_text="the HTTP status, repeated"),
                "message": serializers.CharField(),
                "data": data,
            },
        )
    return _cache[name]


def error_envelope() -> serializers.Serializer:
    return envelope(
        "ErrorEnvelope",
        serializers.DictField(
            allow_null=True,
            child=serializers.JSONField(),
            help_text="null, or details: the invalid fields and their messages for a 400",
        ),
    )


ERROR_TEXT = {
    400: "invalid input (the message names the field)",
    401: "missing, invalid or revoked X-API-Key",
    404: "no such app, snapshot or task (or an id of the wrong shape)",
    409: "the request conflicts with the current state; nothing was changed",
    416: "the Range cannot be served",
    503: "the Docker engine, the task broker or the app's host is unavailable",
}


def responses(ok: dict[int, Any], *errors: int) -> dict[Any, Any]:
    """Success responses OK plus an ErrorEnvelope for 401 and each of ERRORS."""
    result: dict[Any, Any] = dict(ok)
    for status in sorted({401, *errors}):
        result[status] = OpenApiResponse(error_envelope(), description=ERROR_TEXT[status])
    return result
