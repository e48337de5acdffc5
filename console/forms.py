"""The console's forms: what an operator chooses before an action runs."""

from __future__ import annotations

from typing import Any

from django import forms

from snapshots.storage_locations import LOCAL, offsite_targets, s3_names, storage_names

# The kinds of backup the backup service makes (snapshots.services.backup);
# whether an incremental can be one is the run's decision (the chain rule:
# the first of a chain, one after a failed parent, every Nth, are full).
BACKUP_KINDS = [
    ("full", "full (every file and database dump)"),
    ("incremental", "incremental (what changed since the chain's last backup)"),
]


def location_label(name: str) -> str:
    """A storage location in the operator's words (the value stays its name)."""
    if name == LOCAL:
        return "local: this host's disk only"
    if name in s3_names():
        return f"{name}: off-site only (the local copy is removed once the upload is verified)"
    return f"{name}: this host's disk and off-site ({', '.join(offsite_targets(name))})"


class BackupNowForm(forms.Form):
    backup_type = forms.ChoiceField(
        label="kind", choices=BACKUP_KINDS, initial="full",
        help_text="An incremental is made full when its chain needs one (the first, after a "
        "failed one, every Nth).",
        error_messages={
            "invalid_choice": '"%(value)s" is not a backup type; use "full" or "incremental"'
        },
    )  # fmt: skip
    storage_location = forms.ChoiceField(label="location", choices=[], initial=LOCAL)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read per form: the configured S3 locations come from settings.
        self.fields["storage_location"].choices = [
            (name, location_label(name)) for name in storage_names()
        ]


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
