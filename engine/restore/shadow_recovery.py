"""After a restore's worker died: its shadow databases (engine.dumps.mysql_shadow)
settled from its journal. Not committed: a swap made is swapped back (the
aside database holds the app's previous tables), then the restore's own
databases are dropped; committed: they are dropped (the aside one holds the
replaced tables, given up by the decision). An aside database whose swap
back failed is never dropped: it is the app's data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import docker

from engine import steps
from engine.discovery import get_app
from engine.dumps.mysql_shadow import ShadowNames, SwapRecord, drop, swap_back, swapped
from engine.dumps.types import DatabaseRestoreError, with_password_file
from engine.errors import brief
from engine.inventory import DatabaseInfo


def settle_shadows(
    client: docker.DockerClient, app_id: str, journal: Iterable[Mapping[str, Any]], committed: bool
) -> tuple[list[str], list[str]]:
    """What was done and what failed (and why), for the recovery report."""
    entries = list(journal)
    made = [d for e in entries if e.get("step") == steps.SHADOW for d in e.get("databases", [])]
    swaps = [e for e in entries if e.get("step") == steps.DATABASE and e.get("swap")]
    if not made and not swaps:
        return [], []
    done: list[str] = []
    failed: list[str] = []
    try:
        databases = {d.container.id: d for d in get_app(client, app_id).databases}
    except Exception as exc:  # the engine away: tried again on the next round
        return [], [f"the restore's shadow databases: {brief(exc)}"]
    kept_aside: set[str] = set()
    for entry in [] if committed else reversed(swaps):
        names = ShadowNames(entry["swap"]["database"], entry["swap"]["shadow"],
                            entry["swap"]["aside"])  # fmt: skip
        record = SwapRecord(names, entry["swap"]["charset"], entry["swap"]["collation"])
        try:
            db = _ready(client, databases, entry["container"])
            if swapped(client, db, names):
                swap_back(client, db, record)
                done.append(f"database {names.database}: its previous tables swapped back")
        except Exception as exc:
            kept_aside.add(names.aside)
            failed.append(
                f"database {names.database}: its previous tables, in {names.aside}, not "
                f"swapped back: {brief(exc)}"
            )
    by_container: dict[str, list[ShadowNames]] = {}
    for item in made:
        if item["aside"] not in kept_aside:
            names = ShadowNames(item["database"], item["shadow"], item["aside"])
            by_container.setdefault(item["container"], []).append(names)
    for container_id, names_list in by_container.items():
        what = ", ".join(f"{n.shadow}, {n.aside}" for n in names_list)
        try:
            drop(client, _ready(client, databases, container_id), names_list)
            done.append(f"dropped the restore's databases {what}")
        except Exception as exc:
            failed.append(f"the restore's databases {what} not dropped: {brief(exc)}")
    return done, failed


def _ready(
    client: docker.DockerClient, databases: Mapping[str, DatabaseInfo], container_id: str
) -> DatabaseInfo:
    db = databases.get(container_id)
    if db is None:
        raise DatabaseRestoreError(f"database container {container_id[:12]} is not found")
    return with_password_file(client, db, DatabaseRestoreError)
