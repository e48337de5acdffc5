"""The retention preview in the console: which of an app's snapshots its
schedules' policies keep and which retention would remove, each with its
reasons, and the bytes that frees. With a schedule chosen and other rules
typed, the same decision for those rules in place of that schedule's, before
they are saved. Deletes nothing: it is schedules.retention_service's
plan_retention, as the API's retention/preview."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse

from console.views import page
from schedules.models import Schedule
from schedules.retention import KEEP_RULES, Policy
from schedules.retention_service import app_is_known, plan_retention, policies_for

RULES = ("retention_days", *KEEP_RULES)
VIEW_PERMISSION = "snapshots.view_snapshot"
RULE_HELP = {
    "retention_days": "every snapshot of the last N days (counted from the newest)",
    "keep_last": "the newest N scheduled snapshots",
    "keep_daily": "the newest snapshot of each of the last N days",
    "keep_weekly": "… of each of the last N weeks",
    "keep_monthly": "… of each of the last N months",
    "keep_yearly": "… of each of the last N years",
}


class TryPolicyForm(forms.Form):
    """Rules to try in place of one schedule's (every field empty: not used)."""

    schedule = forms.ModelChoiceField(
        queryset=Schedule.objects.none(), required=False,
        empty_label="(a new schedule)", label="in place of",
    )  # fmt: skip

    def __init__(self, *args: Any, app_id: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["schedule"].queryset = Schedule.objects.filter(app_id=app_id)
        for rule in RULES:
            self.fields[rule] = forms.IntegerField(
                required=False, min_value=0, label=rule.replace("_", " "),
                help_text=RULE_HELP[rule],
            )  # fmt: skip

    def policies(self, app_id: str) -> list[Policy]:
        """The app's policies with the tried one in place of the chosen
        schedule's (or added beside them)."""
        chosen: Schedule | None = self.cleaned_data["schedule"]
        rules = {rule: self.cleaned_data.get(rule) for rule in RULES}
        current = policies_for(app_id)
        if chosen is None:
            return [*current, Policy(label="the tried policy", **rules)]
        label = f"schedule {chosen.pk}"
        return [
            replace(policy, label=f"{label} (as tried)", **rules)
            if policy.label == label
            else policy
            for policy in current
        ]


def initial_for(schedule: Schedule | None) -> dict[str, Any]:
    if schedule is None:
        return {}
    return {"schedule": schedule.pk, **{rule: getattr(schedule, rule) for rule in RULES}}


def retention_view(request: HttpRequest, app_id: str) -> HttpResponse:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied(f"needs the {VIEW_PERMISSION} permission")
    if not app_is_known(app_id):
        raise Http404(f"app {app_id} has no schedule or snapshot")
    trying = "try" in request.GET
    if trying:
        form = TryPolicyForm(request.GET, app_id=app_id)
    else:
        chosen = Schedule.objects.filter(app_id=app_id, pk=_int(request.GET.get("schedule")))
        form = TryPolicyForm(initial=initial_for(chosen.first()), app_id=app_id)
    tried = trying and form.is_valid()
    outcome = plan_retention(app_id, policies=form.policies(app_id) if tried else None)
    return page(
        request, "console/retention.html", f"Retention of {app_id}",
        app_id=app_id, form=form, tried=tried, outcome=outcome,
        keep=outcome.decision_rows(keep=True), remove=outcome.decision_rows(keep=False),
        failed_days=settings.BACKUP_RETENTION_FAILED_DAYS,
        pre_restore_days=settings.BACKUP_RETENTION_PRE_RESTORE_DAYS,
        schedules=Schedule.objects.filter(app_id=app_id).order_by("id"),
        rules=RULES, self_url=reverse("admin:console_retention", args=[app_id]),
    )  # fmt: skip


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None
