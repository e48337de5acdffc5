"""Hooks the console into the admin site: the dashboard as its index, the
console's pages under /admin/console/, and the raw django-celery-beat and
celery-results models hidden from the index for non-superusers.

The site is Django's default one (settings and the root URLconf are shared
by every app), so the hooks are set on that instance here, which Django
imports (autodiscover) before the URLconf asks the site for its URLs."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import URLPattern, path

# Imported first so their models are registered now and can be re-registered
# below (autodiscover imports console's admin before theirs).
from django_celery_beat import admin as _beat_admin  # noqa: F401
from django_celery_results import admin as _results_admin  # noqa: F401

from console import actions, retention, views

HIDDEN_APPS = ("django_celery_beat", "django_celery_results")


def _superusers_only(model_admin_class: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    """The same ModelAdmin, for superusers only (listed and opened): these
    tables are the machinery under Schedules and runs, not what an operator
    edits, and task results hold the tasks' raw arguments and tracebacks. A
    staff user's view_* permission on them does not open them either."""

    def superusers_and(check: str) -> Any:
        stock = getattr(model_admin_class, check)

        def allowed(self: admin.ModelAdmin, request: HttpRequest, *args: Any) -> bool:
            superuser = request.user.is_active and request.user.is_superuser
            return bool(superuser and stock(self, request, *args))

        return allowed

    checks = ("has_module_permission", "has_view_permission", "has_add_permission",
              "has_change_permission", "has_delete_permission")  # fmt: skip
    return type(
        model_admin_class.__name__, (model_admin_class,),
        {**{check: superusers_and(check) for check in checks}, "__module__": __name__},
    )  # fmt: skip


def hide_celery_models(site: admin.AdminSite) -> None:
    for model, model_admin in list(site._registry.items()):
        if model._meta.app_label in HIDDEN_APPS:
            site.unregister(model)
            site.register(model, _superusers_only(type(model_admin)))


def console_urls(site: admin.AdminSite) -> list[URLPattern]:
    view = site.admin_view
    return [
        path("console/apps/<str:app_id>/", view(views.app_view), name="console_app"),
        path("console/apps/<str:app_id>/retention/", view(retention.retention_view),
             name="console_retention"),
        path("console/apps/<str:app_id>/backup/", view(actions.backup_now_view),
             name="console_backup_now"),
        path("console/snapshots/<str:backup_id>/verify/", view(actions.verify_view),
             name="console_verify"),
        path("console/snapshots/<str:backup_id>/restore/", view(actions.restore_view),
             name="console_restore"),
        path("console/snapshots/<str:backup_id>/delete/", view(actions.delete_view),
             name="console_delete"),
        path("console/runs/<str:run_id>/", view(views.run_view), name="console_run"),
        path("console/runs/<str:run_id>/status.json", view(views.run_status_view),
             name="console_run_status"),
    ]  # fmt: skip


def install(site: admin.AdminSite) -> None:
    stock_get_urls = site.get_urls

    def get_urls() -> list[Any]:
        # Ours first: the stock catch-all would answer /admin/console/... with a 404.
        return console_urls(site) + stock_get_urls()

    site.get_urls = get_urls  # type: ignore[method-assign]
    # Not "Django administration": the operator opened the backup service.
    site.site_header = site.site_title = "Backup service"
    site.index_title = "Backups at a glance"
    # AdminSite.get_urls wraps self.index, so an instance attribute is the index.
    site.index = views.dashboard_view  # type: ignore[method-assign]
    hide_celery_models(site)


install(admin.site)
