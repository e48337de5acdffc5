"""A test-only URLconf: an API view that declares no scope (test_scopes.py)."""

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response

from snapshots.api.envelope import reply
from snapshots.api.views.base import ApiView


class Undeclared(ApiView):
    def get(self, request: Request) -> Response:
        return reply({"leaked": True})


urlpatterns = [path("undeclared", Undeclared.as_view())]
