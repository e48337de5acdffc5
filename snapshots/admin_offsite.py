"""Off-site copies in the snapshot admin: a read-only inline on the
snapshot's page (location, key, state, bytes uploaded, parts, completed,
last error), a column and a filter in the list. The upload run writes these
rows; the admin only shows them."""

from __future__ import annotations

import math
from typing import Any

from django.contrib import admin
from django.db.models import Count, F, Prefetch, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from snapshots.models import Snapshot
from snapshots.models_offsite import OffsiteCopy


def _size(size: float | None) -> str:
    from snapshots.admin import human_size  # the list's own formatting; admin imports us

    return human_size(size)


class OffsiteCopyInline(admin.TabularInline):
    model = OffsiteCopy
    verbose_name = "off-site copy"
    verbose_name_plural = "off-site copies"
    fields = ["location", "key", "state", "uploaded", "parts", "completed_at", "last_error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[OffsiteCopy]:
        # The parts the open upload recorded, counted in the same query.
        return (
            super()
            .get_queryset(request)
            .annotate(recorded_parts=Count("parts", filter=Q(parts__upload_id=F("upload_id"))))
            .order_by("location")
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="bytes uploaded")
    def uploaded(self, copy: OffsiteCopy) -> str:
        if copy.size_bytes:
            share = f" ({copy.bytes_done / copy.size_bytes:.0%})"
            return f"{_size(copy.bytes_done)} of {_size(copy.size_bytes)}{share}"
        return _size(copy.bytes_done)

    @admin.display(description="parts")
    def parts(self, copy: OffsiteCopy) -> str:
        total = (
            math.ceil(copy.size_bytes / copy.part_size)
            if copy.size_bytes and copy.part_size
            else None
        )
        if copy.state == OffsiteCopy.State.VERIFIED:
            # The part rows are forgotten once the upload completes.
            return f"{total} of {_size(copy.part_size)}" if total else "—"
        recorded = getattr(copy, "recorded_parts", 0)
        return f"{recorded} of {total} acknowledged" if total else f"{recorded} acknowledged"

    @admin.display(description="completed at")
    def completed_at(self, copy: OffsiteCopy) -> str:
        if copy.verified_at is None:
            return "—"
        return timezone.localtime(copy.verified_at).strftime("%Y-%m-%d %H:%M:%S %Z")

    @admin.display(description="last error")
    def last_error(self, copy: OffsiteCopy) -> str:
        return copy.error or "—"


class OffsiteStateFilter(admin.SimpleListFilter):
    """Snapshots by the state of their off-site copies."""

    title = "off-site copy"
    parameter_name = "offsite"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("verified", "verified"),
            ("in_progress", "pending or uploading"),
            ("failed", "failed"),
            ("none", "none (local only)"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "none":
            return queryset.filter(offsite_copies__isnull=True)
        states = {
            "verified": [OffsiteCopy.State.VERIFIED],
            "in_progress": [OffsiteCopy.State.PENDING, OffsiteCopy.State.UPLOADING],
            "failed": [OffsiteCopy.State.FAILED],
        }.get(value or "")
        if states is None:
            return queryset
        return queryset.filter(offsite_copies__state__in=states).distinct()


class OffsiteCopiesMixin:
    """For SnapshotAdmin: the `offsite` column, its rows fetched in one query."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Snapshot]:
        copies = Prefetch("offsite_copies", queryset=OffsiteCopy.objects.order_by("location"))
        return super().get_queryset(request).prefetch_related(copies)  # type: ignore[misc]

    @admin.display(description="off-site")
    def offsite(self, snapshot: Snapshot) -> str:
        copies = list(snapshot.offsite_copies.all())
        if not copies:
            return "—"
        return ", ".join(f"{copy.location}: {copy.state}" for copy in copies)
