"""URL routes: the admin, the health probe, the API and its schema."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from backup_project.health import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/health", health, name="health"),
    path("", include("monitoring.urls")),
    # Before snapshots: its catch-all answers endpoints nobody has.
    path("api/v1/backup/", include("schedules.api.urls")),
    path("api/v1/backup/", include("drills.api.urls")),
    path("api/v1/backup/", include("snapshots.api.urls")),
    path("api/v1/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]
