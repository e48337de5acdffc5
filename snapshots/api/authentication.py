"""X-API-Key authentication for the REST API (keys: services/api_keys.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from snapshots.models_api import ApiKey
from snapshots.services.api_keys import authenticate_api_key

HEADER = "X-API-Key"


class ApiKeyUser:
    """request.user for a call made with an API key (no Django user behind it)."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, key: ApiKey) -> None:
        self.key = key

    def __str__(self) -> str:
        return f"api key {self.key.prefix}"


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiKeyUser, ApiKey] | None:
        raw = request.META.get("HTTP_X_API_KEY")
        if raw is None:
            return None  # HasApiKey turns this into 401 "key required"
        key = authenticate_api_key(raw.strip())
        if key is None:
            # The message never echoes what was sent: it may be a real key of
            # another system, pasted by mistake.
            raise AuthenticationFailed("invalid or revoked API key")
        return ApiKeyUser(key), key

    def authenticate_header(self, request: Request) -> str:
        # Present, so DRF answers 401 (not 403) to a call without a key.
        return f'ApiKey header="{HEADER}"'


class HasApiKey(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ApiKey)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Shows the X-API-Key header as the API's security scheme in OpenAPI."""

    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "header", "name": HEADER}
