"""Admin: an app's notification targets (URLs taken, shown only masked),
the notifications sent (read-only), and a "send test notification" action."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from schedules.admin.widgets import WriteOnlyTextarea
from schedules.models import AppNotificationTargets, Notification
from schedules.notifications import NoTargets, send_test
from schedules.secrets import SecretsUnavailable, encrypt_targets, masked, validate_targets
from snapshots.admin import ReadOnlyAdmin


class AppNotificationTargetsForm(forms.ModelForm):
    """URLs are write-only: the field starts empty (the stored ones are
    shown masked beside it); left empty it keeps them, "clear" drops them."""

    new_targets = forms.CharField(
        label="targets",
        required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "cols": 80, "autocomplete": "off"}),
        help_text="One Apprise URL per line (mailto://, json://, ntfys://, slack://, ...). "
        "Leave empty to keep the current targets; they are stored encrypted and never shown "
        "(after an error, type them again).",
    )
    clear_targets = forms.BooleanField(label="remove all targets", required=False)

    class Meta:
        model = AppNotificationTargets
        fields = ["app_id", "notify_on_success"]

    def clean_new_targets(self) -> list[str] | None:
        text = self.cleaned_data.get("new_targets") or ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            return None
        try:
            return validate_targets(lines)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def save(self, commit: bool = True) -> AppNotificationTargets:
        row = super().save(commit=False)
        if self.cleaned_data.get("clear_targets"):
            row.targets_encrypted = ""
        elif self.cleaned_data.get("new_targets") is not None:
            row.targets_encrypted = encrypt_targets(self.cleaned_data["new_targets"])
        if commit:
            row.save()
        return row


@admin.register(AppNotificationTargets)
class AppNotificationTargetsAdmin(admin.ModelAdmin):
    form = AppNotificationTargetsForm
    list_display = ["app_id", "masked_targets", "notify_on_success"]
    search_fields = ["app_id"]
    readonly_fields = ["masked_targets"]
    fields = ["app_id", "masked_targets", "new_targets", "clear_targets", "notify_on_success"]
    actions = ["send_test_notification"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The app id is the key: changing it would be another app's list.
        return ["app_id", "masked_targets"] if obj else ["masked_targets"]

    @admin.display(description="current targets (masked)")
    def masked_targets(self, row: AppNotificationTargets) -> str:
        shown = masked(row.targets_encrypted) if row.pk else []
        return ", ".join(shown) or "(none)"

    @admin.action(description="Send test notification", permissions=["view"])
    def send_test_notification(
        self, request: HttpRequest, queryset: QuerySet[AppNotificationTargets]
    ) -> None:
        for row in queryset:
            try:
                attempt = send_test(app_id=row.app_id)
            except (NoTargets, SecretsUnavailable) as exc:
                self.message_user(request, f"app {row.app_id}: {exc}", messages.WARNING)
                continue
            for outcome in attempt.outcomes:
                if outcome.ok:
                    self.message_user(request, f"app {row.app_id}: {outcome.target}: sent")
                else:
                    text = f"app {row.app_id}: {outcome.target}: {outcome.status}: {outcome.error}"
                    self.message_user(request, text, messages.ERROR)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "event", "app_id", "state", "attempts", "title", "short_error"]
    list_filter = ["event", "state"]
    search_fields = ["app_id", "title"]
    date_hierarchy = "created_at"

    @admin.display(description="error")
    def short_error(self, row: Notification) -> str:
        return row.error[:120]
