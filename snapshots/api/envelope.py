"""Every response is {"code": <http status>, "message": "...", "data": ...}.

Views return plain data; the renderer wraps it, so no view can forget the
envelope, and errors (see exceptions.py) take the same path."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response


class EncodedJson(str):
    """Data already encoded as JSON (compact, as the renderer writes it): put
    into the envelope as it is (GET apps splices entries it encoded once)."""


def default_message(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error" if status >= 400 else "ok"


def reply(data: Any, status: int = 200, message: str | None = None) -> Response:
    """A response whose envelope says MESSAGE (default: the status phrase)."""
    response = Response(data, status=status)
    response.envelope_message = message or default_message(status)  # type: ignore[attr-defined]
    return response


class EnvelopeRenderer(JSONRenderer):
    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: dict[str, Any] | None = None,
    ) -> bytes:
        response = (renderer_context or {}).get("response")
        if response is None:  # rendering outside a view: nothing to wrap
            return super().render(data, accepted_media_type, renderer_context)
        status = response.status_code
        message = getattr(response, "envelope_message", None) or default_message(status)
        if isinstance(data, EncodedJson):
            envelope = {"code": status, "message": message, "data": None}
            rendered = super().render(envelope, accepted_media_type, renderer_context)
            if rendered.endswith(b"null}"):  # compact, as always here
                return rendered[: -len(b"null}")] + data.encode() + b"}"
            data = json.loads(data)  # any other layout: rendered the long way
        body = {"code": status, "message": message, "data": data}
        return super().render(body, accepted_media_type, renderer_context)


class JsonOnly(BaseContentNegotiation):
    """The API speaks one format. Ignoring Accept means an error of the
    download endpoint (asked for application/octet-stream) is still a
    readable JSON envelope, not a 406."""

    def select_parser(self, request: Request, parsers: list[Any]) -> Any:
        content_type = request.content_type.split(";")[0].strip()
        return next((p for p in parsers if p.media_type == content_type), None)

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type
