"""Form widgets of the schedules admin."""

from __future__ import annotations

from typing import Any

from django import forms


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value: a form shown again for an
    error would otherwise echo the URLs typed, passwords and tokens in
    clear, into the page (and the browser's cache), as PasswordInput does
    not. The error names the target by position, masked."""

    def format_value(self, value: Any) -> None:
        return None
