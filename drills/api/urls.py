"""Routes under /api/v1/backup/ that belong to drills; included before the
snapshots routes (whose catch-all answers unknown endpoints)."""

from django.urls import URLPattern

app_name = "drills-api"

urlpatterns: list[URLPattern] = []
