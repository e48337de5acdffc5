"""Each web request logs in a fresh context: ids a request bound (a run
claimed by an admin action or a quick verify, an API URL's app id) never
leak into the next request this thread serves.

Django logs a 4xx/5xx response ("Not Found: /api/…") in its handler after
the middleware chain returned, when this context is gone; it is logged here
instead, inside the context, with the same words, so the line carries the
request's ids (log_response marks the response, and Django does not log it
again)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.log import log_response

from monitoring import log_context


class LogContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with log_context.fresh():
            response = self.get_response(request)
            if response.status_code >= 400:
                log_response(
                    "%s: %s", response.reason_phrase, request.path,
                    response=response, request=request,
                )  # fmt: skip
            return response
