"""Drills in the admin: read-only (they are results), filterable by
outcome, with what failed in the list itself."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from drills.models import Drill


@admin.register(Drill)
class DrillAdmin(admin.ModelAdmin):
    list_display = ("backup_id", "app_id", "outcome", "state", "short_reason", "duration_seconds",
                    "finished_at")  # fmt: skip
    list_filter = ("outcome", "state", "app_id")
    search_fields = ("backup_id", "app_id", "reason")
    date_hierarchy = "created_at"
    readonly_fields = ["per_database", *(f.name for f in Drill._meta.fields)]

    @admin.display(description="reason")
    def short_reason(self, drill: Drill) -> str:
        # Long enough for "database X (engine, container Y): table Z: expected N, found M".
        return drill.reason if len(drill.reason) <= 240 else drill.reason[:237] + "..."

    @admin.display(description="per database")
    def per_database(self, drill: Drill) -> SafeString:
        """Each database's outcome and figures, and every table that differs."""
        if not drill.databases:
            return format_html("{}", "none (see the reason)")
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}{}</li>", (
            (_line(d), format_html("<ul>{}</ul>", format_html_join(
                "", "<li>{}</li>", ((m,) for m in d.get("mismatches") or ())))
             if d.get("mismatches") else "")
            for d in drill.databases
        )))  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def _line(d: dict[str, Any]) -> str:
    state = "skipped" if d.get("skipped") else "passed" if d.get("ok") else "FAILED"
    figures = f"{d.get('tables')} tables, {d.get('rows')} rows after the restore"
    if d.get("counts_recorded"):
        figures += f"; {d.get('tables_recorded')} tables, {d.get('rows_recorded')} rows when dumped"
    reason = f": {d['reason']}" if d.get("reason") else ""
    return (f"{d.get('database')} ({d.get('engine')}, container {d.get('container')}): {state}"
            f"{reason} ({figures}, {d.get('seconds')} s)")  # fmt: skip
