"""Routes under /api/v1/backup/ that belong to schedules; included before the
snapshots routes (whose catch-all answers unknown endpoints)."""

from schedules.api import notification_urls, retention_urls, schedule_urls

app_name = "schedules-api"

urlpatterns = schedule_urls.urlpatterns + retention_urls.urlpatterns + notification_urls.urlpatterns
