"""Routes under /api/v1/backup/ that belong to drills; included before the
snapshots routes (whose catch-all answers unknown endpoints)."""

from django.urls import URLPattern, path

from drills.api.views import AppDrillView, DrillListView, SnapshotDrillView

app_name = "drills-api"

urlpatterns: list[URLPattern] = [
    path("snapshots/<str:backup_id>/drill", SnapshotDrillView.as_view(), name="drill"),
    path("apps/<str:app_id>/drill", AppDrillView.as_view(), name="app-drill"),
    path("drills", DrillListView.as_view(), name="drills"),
]
