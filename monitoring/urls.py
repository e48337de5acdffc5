"""Routes of monitoring (GET /metrics)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
