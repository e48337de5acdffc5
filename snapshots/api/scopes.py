"""Which API key scope each API call needs, and the permission enforcing it.

Every API view declares its scope in one place, its `required_scope`
attribute: one scope for all its methods, or a mapping of method name to
scope, e.g. `required_scope = {"get": READ, "post": OPERATE}`. Adding an
endpoint is that one line. A view (or a method of it) that declares nothing
is refused for every key, admin included: forgetting the line fails closed,
and tests/api/test_scopes.py walks every API route to catch it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from snapshots.models_api import ApiKey
from snapshots.services.api_keys import scope_allows

READ = ApiKey.Scope.READ
OPERATE = ApiKey.Scope.OPERATE
ADMIN = ApiKey.Scope.ADMIN

ScopeDeclaration = str | Mapping[str, str]


class ScopeDenied(PermissionDenied):
    """A 403 whose envelope data says which scope was needed and which the key has."""

    def __init__(self, message: str, data: dict[str, Any]) -> None:
        super().__init__(message)
        self.envelope_data = data


def declared_scope(view_class: type, method: str) -> str | None:
    """The scope VIEW_CLASS declares for METHOD, or None when it declares none.
    HEAD needs what GET needs; OPTIONS (it only describes the endpoint) needs
    read, on a view that declares anything at all."""
    declaration: ScopeDeclaration | None = getattr(view_class, "required_scope", None)
    if declaration is None:
        return None
    method = method.lower()
    if method == "head":
        method = "get"
    if method == "options" and declaration:
        return READ
    if isinstance(declaration, str):
        return declaration
    return declaration.get(method)


def handles(view: Any, method: str) -> bool:
    """Whether VIEW has a handler for METHOD (else Django answers 405, which
    tells nothing about the endpoint's data, so no scope is needed for it)."""
    name = method.lower()
    return name in view.http_method_names and hasattr(view, name)


class HasScope(BasePermission):
    """The request's API key has the scope its view declares for the method.
    Runs after HasApiKey: a call without a valid key is a 401 before this."""

    def has_permission(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return False
        if not handles(view, request.method or ""):
            return True
        required = declared_scope(type(view), request.method or "")
        if required is None:
            raise ScopeDenied(
                f"{request.method} {request.path} declares no API key scope, so no key may "
                "call it (a server bug: please report it)",
                {"required_scope": None, "key_scope": key.scope},
            )
        if not scope_allows(key.scope, required):
            raise ScopeDenied(
                f"this API key's scope is {key.scope}; {request.method} {request.path} needs "
                f"{required} (change it with manage.py apikey scope {key.prefix} {required}, "
                "or in the admin)",
                {"required_scope": required, "key_scope": key.scope},
            )
        return True


class ScopedAutoSchema(AutoSchema):
    """OpenAPI descriptions end with the scope the operation needs, read from
    the same declaration the permission enforces. Added to the finished
    operation: extend_schema(description=...) replaces get_description."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        scope = declared_scope(type(self.view), self.method)
        if operation is None or scope is None:
            return operation
        note = f"Needs an API key with scope `{scope}` (read < operate < admin)."
        description = operation.get("description")
        operation["description"] = f"{description}\n\n{note}" if description else note
        return operation
