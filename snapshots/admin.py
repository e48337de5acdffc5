"""The admin as an ops console: browse snapshots and runs, verify and delete
snapshots, manage API keys and per-app policies. Actions call the same
services as the API; rows the services own are read-only here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from engine.errors import EngineError
from snapshots.admin_offsite import OffsiteCopiesMixin, OffsiteCopyInline, OffsiteStateFilter
from snapshots.models import ApiKey, AppBackupPolicy, Run, Snapshot
from snapshots.services.api_keys import create_api_key, revoke_api_key, set_api_key_scope
from snapshots.services.snapshots import delete_snapshot, verify_now


def human_size(size: float | None) -> str:
    if size is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


class AppIdFilter(admin.SimpleListFilter):
    """The distinct app ids (one indexed query), not a free-text field."""

    title = "app"
    parameter_name = "app_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        apps = model_admin.model.objects.order_by("app_id").values_list("app_id", flat=True)
        return [(app_id, app_id) for app_id in apps.distinct()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(app_id=self.value()) if self.value() else queryset


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services: no add, no edit, no raw delete."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Snapshot)
class SnapshotAdmin(OffsiteCopiesMixin, ReadOnlyAdmin):
    # Few, narrow columns so size stays on screen at 1400 px; kind, purpose and
    # encryption are filters and on each snapshot's page.
    list_display = [
        "backup_id", "app_id", "status", "storage_location", "offsite", "size", "duration",
        "warning_count", "created_at",
    ]  # fmt: skip
    inlines = [OffsiteCopyInline]
    exclude = ["warnings"]  # shown as a list by warning_list
    readonly_fields = ["warning_list"]
    list_filter = [
        AppIdFilter, "status", "kind", "storage_location", OffsiteStateFilter, "purpose",
        "encrypted",
    ]  # fmt: skip
    search_fields = ["backup_id", "app_id"]
    date_hierarchy = "created_at"
    list_per_page = 50
    actions = ["verify_quick", "delete_through_service"]

    @admin.display(description="size", ordering="size_bytes")
    def size(self, snapshot: Snapshot) -> str:
        return human_size(snapshot.size_bytes)

    @admin.display(description="duration")
    def duration(self, snapshot: Snapshot) -> str:
        return human_duration(snapshot.duration_seconds)

    @admin.display(description="warnings")
    def warning_count(self, snapshot: Snapshot) -> str:
        return str(len(snapshot.warnings)) if snapshot.warnings else "—"

    @admin.display(description="warnings")
    def warning_list(self, snapshot: Snapshot) -> str:
        if not snapshot.warnings:
            return "—"
        items = format_html_join("", "<li>{}</li>", ((warning,) for warning in snapshot.warnings))
        return format_html("<ul>{}</ul>", items)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Snapshot]:
        return super().get_queryset(request).defer("contents")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # it would bypass the service
        return actions

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("snapshots.delete_snapshot")

    @admin.action(description="Verify (quick: checksum)", permissions=["view"])
    def verify_quick(self, request: HttpRequest, queryset: QuerySet[Snapshot]) -> None:
        for snapshot in queryset:
            try:
                run = verify_now(snapshot, wait_seconds=0)  # one host's run need not hold the page
            except EngineError as exc:
                self.message_user(request, f"snapshot {snapshot}: {exc}", messages.WARNING)
                continue
            if run.state not in (Run.State.COMPLETED, Run.State.FAILED):
                self.message_user(
                    request, f"snapshot {snapshot}: quick verification queued on host "
                    f"{run.host_id}, whose disk holds it (run {run.pk})",
                )  # fmt: skip
                continue
            if run.result.get("valid"):
                self.message_user(
                    request, f"snapshot {snapshot}: valid (checksum and sidecar match)"
                )
            else:
                problems = "; ".join(run.result.get("errors") or [run.error])
                self.message_user(
                    request, f"snapshot {snapshot}: NOT valid: {problems}", messages.ERROR
                )

    @admin.action(description="Delete (archive, sidecar and row)", permissions=["manage"])
    def delete_through_service(self, request: HttpRequest, queryset: QuerySet[Snapshot]) -> None:
        freed = deleted = 0
        for snapshot in queryset.order_by("-created_at"):  # children before their parents
            try:
                result = delete_snapshot(snapshot)
            except EngineError as exc:
                self.message_user(request, f"not deleted: {exc}", messages.ERROR)
                continue
            deleted += 1
            freed += result.freed_bytes
        if deleted:
            self.message_user(request, f"deleted {deleted} snapshot(s), freed {human_size(freed)}")


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = [
        "id", "operation", "app_id", "snapshot", "state", "phase", "progress", "short_error",
        "created_at", "duration",
    ]  # fmt: skip
    list_filter = ["operation", "state", "host_id"]
    search_fields = ["id", "app_id", "snapshot__backup_id"]
    list_select_related = ["snapshot"]
    date_hierarchy = "created_at"
    list_per_page = 50

    @admin.display(description="progress")
    def progress(self, run: Run) -> str:
        if run.bytes_total:
            share = min(run.bytes_done / run.bytes_total, 1.0)
            return f"{share:.0%} of {human_size(run.bytes_total)}"
        return human_size(run.bytes_done) if run.bytes_done else "—"

    @admin.display(description="error")
    def short_error(self, run: Run) -> str:
        return run.error if len(run.error) <= 80 else run.error[:77] + "..."

    @admin.display(description="duration")
    def duration(self, run: Run) -> str:
        if run.started_at and run.finished_at:
            return human_duration((run.finished_at - run.started_at).total_seconds())
        return "—"


class ApiKeyForm(forms.ModelForm):
    """A key created without a scope gets operate, as with `apikey create`."""

    class Meta:
        model = ApiKey
        fields = ["name", "scope"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "scope" in self.fields:
            self.fields["scope"].required = False

    def clean_scope(self) -> str:
        return self.cleaned_data.get("scope") or ApiKey.Scope.OPERATE


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = [
        "name", "prefix", "scope", "active", "created_at", "last_used_at", "revoked_at",
    ]  # fmt: skip
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    fields = ["name", "prefix", "scope", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(boolean=True, description="active")
    def active(self, key: ApiKey) -> bool:
        return key.active

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        # The name is chosen at creation; renaming a key is not a thing.
        return [*self.readonly_fields, "name"] if obj else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            # Only the scope can change (through the service, like the command).
            if "scope" in form.changed_data:
                set_api_key_scope(obj, obj.scope)
                self.message_user(request, f"API key {obj.prefix}: scope is now {obj.scope}")
            return
        created, raw_key = create_api_key(obj.name, obj.scope)
        obj.pk = created.pk
        obj.refresh_from_db()
        # Shown once: only its hash is stored, so it can never be shown again.
        self.message_user(
            request,
            f"API key {created.name!r} ({created.scope}) created: {raw_key} — copy it now, "
            "it will not be shown again.",
            messages.WARNING,
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the row records who had access until when

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Revoke", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(1 for key in queryset if revoke_api_key(key))
        self.message_user(request, f"revoked {revoked} key(s)")


@admin.register(AppBackupPolicy)
class AppBackupPolicyAdmin(admin.ModelAdmin):
    list_display = ["app_id", "consistency", "include_databases"]
    list_filter = ["consistency", "include_databases"]
    search_fields = ["app_id"]
