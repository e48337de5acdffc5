"""What a restore tells the operator it could not do itself: a service the
backup had a container for that has none now (removed with `docker rm -f`,
or the app uninstalled). A restore puts data back; it does not create
containers, so without this the result said nothing and the app stayed
down with its data restored."""

from __future__ import annotations

from typing import Any

from engine.inventory import AppInfo


def missing_services_warning(backup: dict[str, Any], app: AppInfo) -> str | None:
    """A warning naming the backup's services that have no container in
    APP (as discovered before the restore), or None when all do."""
    present = {c.service for c in app.containers if not c.one_off}
    missing: dict[str, str] = {}
    for container in backup.get("containers") or []:
        if not isinstance(container, dict):
            continue
        service = str(container.get("service") or "")
        if service and service not in present:
            missing.setdefault(service, str(container.get("name") or service))
    if not missing:
        return None
    named = ", ".join(f"{service} ({name})" for service, name in sorted(missing.items()))
    where = f" in {app.working_dir}" if app.working_dir else " in the app's compose directory"
    return (
        f"no container now for the backup's service(s) {named}: their data is restored, "
        f"but a restore does not create containers; start them with `docker compose up -d`{where}"
    )
