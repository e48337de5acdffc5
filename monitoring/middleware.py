"""Each web request logs in a fresh context: ids a request bound (a run
claimed by an admin action or a quick verify) never leak into the next
request this thread serves."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from monitoring import log_context


class LogContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with log_context.fresh():
            return self.get_response(request)
