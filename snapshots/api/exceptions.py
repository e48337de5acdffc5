"""Errors as envelopes: each known failure gets its status and a message an
operator can act on; anything unexpected is logged and answered with a 500
envelope that reveals nothing internal."""

from __future__ import annotations

import logging
from typing import Any

from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from engine.errors import (
    AppLocked,
    AppNotFound,
    DockerUnavailable,
    EngineError,
    ObjectNotFound,
    StorageError,
)
from fleet.errors import AppOnManyHosts, HostOffline, RefreshNotQueued, UnknownHost
from snapshots.api.ranges import RangeNotSatisfiable
from snapshots.selectors import Conflict, NotFound
from snapshots.services.backup import BackupRefused
from snapshots.services.encryption import EncryptionNotConfigured
from snapshots.services.restore import AppBusy, RestoreRefused, SnapshotNotFound
from snapshots.services.snapshots import QueueUnavailable, SnapshotInUse
from snapshots.services.verify import NotVerifiable
from snapshots.storage_locations import UnknownStorageLocation

logger = logging.getLogger(__name__)

# Looked up along the exception's MRO, so a subclass may differ from its base
# (SnapshotNotFound is a RestoreRefused, but a 404).
STATUS_BY_ERROR: dict[type[BaseException], int] = {
    NotFound: 404,
    AppNotFound: 404,
    SnapshotNotFound: 404,
    ObjectNotFound: 404,
    UnknownHost: 404,
    Conflict: 409,
    AppOnManyHosts: 409,
    AppBusy: 409,
    AppLocked: 409,
    RestoreRefused: 409,
    NotVerifiable: 409,
    SnapshotInUse: 409,
    BackupRefused: 400,
    EncryptionNotConfigured: 400,
    UnknownStorageLocation: 400,
    RangeNotSatisfiable: 416,
    DockerUnavailable: 503,
    QueueUnavailable: 503,
    HostOffline: 503,
    RefreshNotQueued: 503,
    StorageError: 500,
    EngineError: 500,
}
MESSAGES = {
    drf.NotAuthenticated: "an API key is required: send it in the X-API-Key header",
    drf.AuthenticationFailed: "invalid or revoked API key",
}


def _status_of(exc: BaseException) -> int | None:
    return next((STATUS_BY_ERROR[c] for c in type(exc).__mro__ if c in STATUS_BY_ERROR), None)


def _first_error(detail: Any, path: str = "") -> tuple[str, str]:
    """(dotted field path, message) of the first error in a DRF error tree."""
    if isinstance(detail, dict) and detail:
        field, errors = next(iter(detail.items()))
        return _first_error(errors, f"{path}.{field}" if path else str(field))
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], path)
    return path, str(detail)


def _validation_message(detail: Any) -> str:
    """E.g. "invalid input: page: Ensure this value is greater than or equal to 1." """
    path, message = _first_error(detail)
    return f"invalid input: {path}: {message}" if path else f"invalid input: {message}"


def _envelope_extra(exc: BaseException) -> dict[str, Any] | None:
    if isinstance(exc, SnapshotInUse) and exc.children:
        return {"children": exc.children}
    if isinstance(exc, RangeNotSatisfiable):
        return {"size_bytes": exc.size}
    if isinstance(exc, AppOnManyHosts):
        return {"hosts": exc.hosts}
    return None


def envelope_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, drf.ValidationError):
        data = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response = Response(data, status=400)
        response.envelope_message = _validation_message(data)  # type: ignore[attr-defined]
        return response
    response = drf_exception_handler(exc, context)  # Http404, 405, 401... with their headers
    if response is not None:
        message = MESSAGES.get(type(exc)) or str(response.data.get("detail", "error"))
        # A scope refusal says which scope was needed (snapshots/api/scopes.py).
        response.data = getattr(exc, "envelope_data", None)
        response.envelope_message = message  # type: ignore[attr-defined]
        return response
    status = _status_of(exc)
    if status is None or status == 500:
        # Unexpected: the details go to the log, the client gets no internals.
        logger.error("API error in %s", context.get("view"), exc_info=exc)
        message = str(exc) if isinstance(exc, EngineError) else "internal error; see the server log"
        response = Response(None, status=500)
        response.envelope_message = message  # type: ignore[attr-defined]
        return response
    response = Response(_envelope_extra(exc), status=status)
    response.envelope_message = str(exc)  # type: ignore[attr-defined]
    if isinstance(exc, RangeNotSatisfiable):
        response["Content-Range"] = f"bytes */{exc.size}"
    return response
