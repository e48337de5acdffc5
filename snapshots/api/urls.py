"""Routes under /api/v1/backup/. Ids are matched loosely here and checked
by their exact shape in the selectors, so junk gets the same 404 envelope
as an unknown id."""

from django.urls import path, re_path

from snapshots.api.views.apps import AppDetailView, AppListView
from snapshots.api.views.base import NoSuchEndpoint
from snapshots.api.views.download import SnapshotDownloadView
from snapshots.api.views.hosts import HostListView, HostRefreshView
from snapshots.api.views.restore import RestoreView
from snapshots.api.views.snapshots import SnapshotDetailView, SnapshotListView
from snapshots.api.views.storage import StorageView
from snapshots.api.views.tasks import TaskDetailView
from snapshots.api.views.verify import SnapshotVerifyView

app_name = "backup-api"

urlpatterns = [
    path("apps", AppListView.as_view(), name="apps"),
    path("apps/<str:app_id>", AppDetailView.as_view(), name="app"),
    path("hosts", HostListView.as_view(), name="hosts"),
    path("hosts/<str:host_id>/refresh", HostRefreshView.as_view(), name="host-refresh"),
    path("snapshots", SnapshotListView.as_view(), name="snapshots"),
    path("snapshots/<str:backup_id>", SnapshotDetailView.as_view(), name="snapshot"),
    path("snapshots/<str:backup_id>/download", SnapshotDownloadView.as_view(), name="download"),
    path("snapshots/<str:backup_id>/verify", SnapshotVerifyView.as_view(), name="verify"),
    path("restore/<str:app_id>/<str:backup_id>", RestoreView.as_view(), name="restore"),
    path("tasks/<str:task_id>", TaskDetailView.as_view(), name="task"),
    path("storage", StorageView.as_view(), name="storage"),
    re_path(r"^(?P<rest>.*)$", NoSuchEndpoint.as_view(), name="no-such-endpoint"),
]
