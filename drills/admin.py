"""Drills in the admin: read-only (they are results), filterable by
outcome, with what failed in the list itself."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from drills.models import Drill


@admin.register(Drill)
class DrillAdmin(admin.ModelAdmin):
    list_display = ("backup_id", "app_id", "outcome", "state", "short_reason", "duration_seconds",
                    "finished_at")  # fmt: skip
    list_filter = ("outcome", "state", "app_id")
    search_fields = ("backup_id", "app_id", "reason")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Drill._meta.fields]

    @admin.display(description="reason")
    def short_reason(self, drill: Drill) -> str:
        return drill.reason if len(drill.reason) <= 120 else drill.reason[:117] + "..."

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
