"""The base of every API view: API-key auth, JSON in, enveloped JSON out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from monitoring.log_context import bind_request_ids
from snapshots.api.authentication import ApiKeyAuthentication, HasApiKey
from snapshots.api.envelope import EnvelopeRenderer, JsonOnly, reply
from snapshots.api.exceptions import envelope_exception_handler
from snapshots.api.parsers import BoundedJSONParser
from snapshots.api.scopes import READ, HasScope, ScopeDeclaration
from snapshots.api.serializers import TaskAcceptedSerializer
from snapshots.models import Run
from snapshots.selectors import NotFound


class ApiView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey, HasScope]
    # The API key scope each method needs (snapshots/api/scopes.py): one scope,
    # or {"get": READ, "post": OPERATE}. None: every call is refused (403).
    required_scope: ScopeDeclaration | None = None
    renderer_classes = [EnvelopeRenderer]
    parser_classes = [BoundedJSONParser]  # JSON only, nesting bounded (400, not 500)
    content_negotiation_class = JsonOnly
    # Method ("get") -> the serializer of its query string; self.query holds
    # the validated values.
    query_serializers: dict[str, type[Serializer]] = {}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # authentication first: 401 before 400
        bind_request_ids(kwargs)
        self.query = self._parse_query(request)

    def _parse_query(self, request: Request) -> dict[str, Any]:
        """The validated query string. Unknown parameters are refused: a
        typo (?app=wordpress) silently listing every snapshot helps nobody."""
        method = "get" if request.method == "HEAD" else request.method.lower()
        serializer_class = self.query_serializers.get(method)
        known = sorted(serializer_class().fields) if serializer_class else []
        unknown = sorted(set(request.query_params) - set(known))
        if unknown:
            hint = f"; known: {', '.join(known)}" if known else "; this endpoint takes none"
            raise ValidationError({name: [f"unknown query parameter{hint}"] for name in unknown})
        if serializer_class is None:
            return {}
        return self.valid(serializer_class, request.query_params.dict())

    def get_exception_handler(self) -> Callable[..., Response]:
        return envelope_exception_handler

    @staticmethod
    def valid(serializer_class: type[Serializer], data: Any) -> dict[str, Any]:
        """DATA validated by SERIALIZER_CLASS (400 naming the field otherwise).
        Query strings come as a plain dict: DRF reads a QueryDict as an HTML
        form, where `status=` means "not given"; here it is invalid."""
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


def accepted(run: Run, message: str) -> Response:
    """202 with the task id of RUN (its Celery task id) to poll."""
    data = {
        "task_id": run.pk, "operation": run.operation, "app_id": run.app_id,
        "backup_id": run.snapshot.backup_id if run.snapshot else None, "state": run.state,
    }  # fmt: skip
    return reply(TaskAcceptedSerializer(data).data, status=202, message=message)


class NoSuchEndpoint(ApiView):
    """Any other path under the prefix: a 404 envelope (not Django's HTML page),
    also for ids with '/' in them such as '../../etc'."""

    required_scope = READ  # any key learns only that the endpoint does not exist

    @extend_schema(exclude=True)
    def get(self, request: Request, rest: str = "") -> Response:
        raise NotFound(f"no endpoint {request.path}; see /api/v1/docs")

    post = put = patch = delete = get
