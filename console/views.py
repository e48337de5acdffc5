"""The console's read pages: the dashboard (the admin's start page), one
app's page with its charts, and a run's page with its JSON for the poll."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from console import charts
from console.format import human_duration, human_size
from console.host_apps import host_apps as stored_host_apps
from console.rows import app_rows
from console.selectors import backup_history, dashboard, recent_runs, recent_snapshots
from snapshots.api.serializers import TaskSerializer
from snapshots.selectors import NotFound, get_run

TERMINAL = ("completed", "failed")


def page(request: HttpRequest, template: str, title: str, **extra: Any) -> HttpResponse:
    """Render TEMPLATE inside the admin's frame (its header, user links, theme)."""
    context = {**admin.site.each_context(request), "title": title, **extra}
    return render(request, template, context)


def dashboard_view(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
    """The admin's index. ?apps=1 shows the stock list of models to superusers."""
    if request.GET.get("apps") and request.user.is_superuser:
        return admin.site.__class__.index(admin.site, request, extra_context)
    data = dashboard()
    host_apps = stored_host_apps().without(app.app_id for app in data.apps)
    location_chart = charts.bar_chart(
        "Storage used per location",
        [(name, size) for name, _count, size in data.locations],
        human_size,
    )
    return page(
        request, "console/dashboard.html", "Backups at a glance",
        data=data, location_chart=location_chart, rows=app_rows(data.apps, data.now),
        host_apps=host_apps,
        # The host's apps with nothing yet need attention first of all.
        app_count=len(data.apps) + len(host_apps.app_ids),
        problems=sum(1 for app in data.apps if app.level != "ok") + len(host_apps.app_ids),
    )  # fmt: skip


def app_view(request: HttpRequest, app_id: str) -> HttpResponse:
    history = backup_history(app_id)
    snapshots = recent_snapshots(app_id)
    runs = recent_runs(app_id)
    if not (history or snapshots or runs):
        raise Http404(f"no backups or runs of app {app_id}")
    size_chart = charts.line_chart(
        f"{app_id}: backup size", [(p.at, p.size_bytes) for p in history], human_size
    )
    duration_chart = charts.line_chart(
        f"{app_id}: backup duration",
        [(p.at, p.duration_seconds) for p in history if p.duration_seconds is not None],
        human_duration,
        colour="#ba2121",
    )
    return page(
        request, "console/app.html", f"App {app_id}",
        app_id=app_id, snapshots=snapshots, runs=runs,
        size_chart=size_chart, duration_chart=duration_chart,
    )  # fmt: skip


@never_cache
def run_view(request: HttpRequest, run_id: str) -> HttpResponse:
    run = _run(run_id)
    return page(
        request, "console/run.html", f"{run.operation.capitalize()} of {run.app_id}",
        run=run, task=_task(run), terminal=run.state in TERMINAL,
        status_url=reverse("admin:console_run_status", args=[run.pk]),
    )  # fmt: skip


@never_cache
def run_status_view(request: HttpRequest, run_id: str) -> JsonResponse:
    """What the run page polls: the API's task representation."""
    return JsonResponse(_task(_run(run_id)))


def _run(run_id: str) -> Any:
    try:
        return get_run(run_id)
    except NotFound as exc:
        raise Http404(str(exc)) from None


def _task(run: Any) -> dict[str, Any]:
    data = dict(TaskSerializer(run).data)
    data["terminal"] = run.state in TERMINAL
    data["progress_text"] = _progress_text(run)
    data["outcome"] = outcome(run)
    return data


def outcome(run: Any) -> str:
    """What the operator should read: a verify that found the snapshot NOT
    valid completed as a run but is a failure of the snapshot."""
    if run.state == "failed" or (run.state == "completed" and run.result.get("valid") is False):
        return "failed"
    return run.state


def _progress_text(run: Any) -> str:
    if run.state == "completed":
        return "done"
    if run.state == "failed":
        return "stopped"
    if run.bytes_total:
        share = min(run.bytes_done / run.bytes_total, 1.0)
        return f"{share:.0%} of {human_size(run.bytes_total)}"
    return human_size(run.bytes_done) if run.bytes_done else "waiting"
