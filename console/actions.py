"""The console's actions, through the same services as the API: back up now,
verify, restore (after a confirmation page) and delete. Long work is queued
as a Celery task; the browser is sent to the run's page to watch it."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.format import human_size
from console.forms import BackupNowForm, RestoreForm, VerifyForm
from console.views import page
from engine.errors import EngineError
from snapshots.models import Snapshot
from snapshots.services.restore import RestoreOptions
from snapshots.services.snapshots import (
    delete_snapshot,
    start_backup,
    start_deep_verify,
    start_restore,
    verify_now,
)

# Who may do what (superusers may do everything). Verify only reads, as the
# snapshot list's verify action; restore replaces an app's data and delete
# loses a backup: both need the snapshot delete permission.
BACKUP_PERMISSION = "snapshots.add_snapshot"
VERIFY_PERMISSION = "snapshots.view_snapshot"
MANAGE_PERMISSION = "snapshots.delete_snapshot"


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied(f"needs the {permission} permission")


def _to_run(run: Any) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("admin:console_run", args=[run.pk]))


def _snapshot(backup_id: str) -> Snapshot:
    return get_object_or_404(Snapshot.objects.defer("warnings"), backup_id=backup_id)


def backup_now_view(request: HttpRequest, app_id: str) -> HttpResponse:
    _require(request, BACKUP_PERMISSION)
    form = BackupNowForm(request.POST or None)
    # ?host_id= (the dashboard's link names the app's host): needed when
    # the app id is on two hosts; the form posts back to this same URL.
    host_id = request.GET.get("host_id") or None
    if request.method == "POST" and form.is_valid():
        try:
            chosen = form.cleaned_data
            run = start_backup(
                app_id, storage_location=chosen["storage_location"],
                backup_type=chosen["backup_type"], host_id=host_id,
            )  # fmt: skip
        except EngineError as exc:  # on no host or two, offline, unknown location, broker down
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"backup of {app_id} queued")
            return _to_run(run)
    return page(request, "console/backup_now.html", f"Back up {app_id} now",
                app_id=app_id, form=form, host_id=host_id)  # fmt: skip


@require_POST
def verify_view(request: HttpRequest, backup_id: str) -> HttpResponse:
    _require(request, VERIFY_PERMISSION)
    snapshot = _snapshot(backup_id)
    form = VerifyForm(request.POST)
    deep = form.is_valid() and form.cleaned_data["deep"]
    try:
        # Quick is a checksum of the stored bytes, done here as the API does;
        # deep reads every member, so it is a task.
        # (on the host that holds a local archive of another host: the run page follows it)
        run = start_deep_verify(snapshot) if deep else verify_now(snapshot, wait_seconds=0)
    except EngineError as exc:
        messages.error(request, f"snapshot {backup_id}: not verified: {exc}")
        return HttpResponseRedirect(reverse("admin:console_app", args=[snapshot.app_id]))
    return _to_run(run)


def restore_view(request: HttpRequest, backup_id: str) -> HttpResponse:
    _require(request, MANAGE_PERMISSION)
    snapshot = _snapshot(backup_id)
    form = RestoreForm(request.POST or None, app_id=snapshot.app_id)
    if request.method == "POST" and form.is_valid():
        chosen = form.cleaned_data
        options = {key: value for key, value in chosen.items() if key != "confirm_app_id"}
        try:
            run = start_restore(snapshot.app_id, backup_id, RestoreOptions(**options))
        except EngineError as exc:  # busy, not restorable, no rollback possible, broker down
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"restore of {snapshot.app_id} from {backup_id} queued")
            return _to_run(run)
    return page(
        request, "console/restore_confirm.html", f"Restore {snapshot.app_id}?",
        snapshot=snapshot, form=form, replaced=replaced_by(snapshot),
    )  # fmt: skip


def replaced_by(snapshot: Snapshot) -> dict[str, list[str]]:
    """What a restore of SNAPSHOT replaces, from its backup.json summary."""
    contents = snapshot.contents or {}
    volumes = contents.get("volumes") or {}
    names = list(volumes) if isinstance(volumes, dict) else [str(v) for v in volumes]
    databases = [
        " ".join(
            str(part)
            for part in (db.get("engine"), db.get("database"), f"in {db.get('container')}")
            if part
        )
        for db in contents.get("databases") or []
        if isinstance(db, dict)
    ]
    return {"volumes": names, "databases": databases,
            "config_files": [str(f) for f in contents.get("config_files") or []]}  # fmt: skip


def delete_view(request: HttpRequest, backup_id: str) -> HttpResponse:
    _require(request, MANAGE_PERMISSION)
    snapshot = _snapshot(backup_id)
    if request.method == "POST":
        try:
            deleted = delete_snapshot(snapshot)
        except EngineError as exc:
            messages.error(request, f"snapshot {backup_id} not deleted: {exc}")
        else:
            freed = human_size(deleted.freed_bytes)
            messages.success(request, f"snapshot {backup_id} deleted ({freed} freed)")
            return HttpResponseRedirect(reverse("admin:console_app", args=[snapshot.app_id]))
    return page(request, "console/delete_confirm.html", f"Delete {backup_id}?",
                snapshot=snapshot)  # fmt: skip
