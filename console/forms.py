"""The console's forms: what an operator chooses before an action runs."""

from __future__ import annotations

from typing import Any

from django import forms

from snapshots.storage_locations import storage_names


class BackupNowForm(forms.Form):
    backup_type = forms.ChoiceField(
        choices=[("full", "full"), ("incremental", "incremental")], initial="full"
    )
    storage_location = forms.ChoiceField(choices=[], initial="local")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = storage_names()
        self.fields["storage_location"].choices = [(name, name) for name in names]

    def clean_backup_type(self) -> str:
        value = self.cleaned_data["backup_type"]
        if value == "incremental":
            # The backup service makes full backups only today; the API says the same.
            raise forms.ValidationError('incremental backups are not available yet; use "full"')
        return value


class VerifyForm(forms.Form):
    deep = forms.BooleanField(required=False)


class RestoreForm(forms.Form):
    """The restore's options and the typed app id that confirms it."""

    confirm_app_id = forms.CharField(
        label="Type the app id to confirm", max_length=128, strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )  # fmt: skip
    stop_app = forms.BooleanField(required=False, initial=True, label="Stop the app meanwhile")
    restore_database = forms.BooleanField(
        required=False, initial=True, label="Restore the databases from their dumps"
    )
    backup_before_restore = forms.BooleanField(
        required=False, initial=True, label="Take a safety backup first (rolled back to on failure)"
    )
    accept_no_database_rollback = forms.BooleanField(
        required=False, label="Restore databases even when no database rollback is possible"
    )

    def __init__(self, *args: Any, app_id: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app_id = app_id

    def clean_confirm_app_id(self) -> str:
        typed = self.cleaned_data["confirm_app_id"]
        if typed != self.app_id:
            raise forms.ValidationError(
                f"type the app id exactly ({self.app_id}) to confirm the restore"
            )
        return typed
