"""Routes of retention: the preview (a dry run) of what would be removed."""

from django.urls import path

from schedules.api.retention_views import RetentionPreviewView

urlpatterns = [
    path("retention/preview", RetentionPreviewView.as_view(), name="retention-preview"),
]
