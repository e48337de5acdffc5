"""The databases phase of a restore, for dumps loaded while the app ran
(engine.restore.shadow_loads): each shadow database's tables swapped in,
in the downtime, with what a rollback or a recovery needs recorded first."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import docker

from engine import steps
from engine.dumps.mysql_shadow import plan_swap, run_swap, swapped
from engine.dumps.types import DatabaseRestoreError
from engine.inventory import ContainerInfo, DatabaseInfo
from engine.restore.plan import RestorePlan
from engine.restore.settle import Changes
from engine.restore.shadow_loads import ShadowLoads, ShadowTarget
from engine.steps import StepGuard

logger = logging.getLogger(__name__)


def loaded_and_kept(
    shadows: ShadowLoads, kept: list[ContainerInfo] | None
) -> dict[str, ShadowTarget]:
    """The dumps loaded into shadow databases (once every load has ended)
    whose server stays up through the restore (KEPT; None: all do): a swap
    needs it running."""
    loaded = shadows.wait()
    if kept is None:
        return loaded
    kept_ids = {c.id for c in kept}
    for name, target in list(loaded.items()):
        if target.db.container.id not in kept_ids:
            del loaded[name]
            shadows.skipped.append(
                f"{target.names.database} in {target.db.container.name}: its container is "
                "stopped for the restore"
            )
    return loaded


def swap_databases(
    client: docker.DockerClient,
    plan: RestorePlan,
    loaded: Mapping[str, ShadowTarget],
    guard: StepGuard,
    changes: Changes,
) -> tuple[dict[str, tuple[DatabaseInfo, list[dict[str, Any]]]], list[str]]:
    """Swap in the tables of each dump LOADED into a shadow database; return
    PLAN's other dumps, to be loaded now, and the databases swapped in. A swap that fails having
    moved nothing leaves its dump to be loaded too; one that may have moved
    tables is recorded for the rollback (which swaps back) and raised."""
    rest: dict[str, tuple[DatabaseInfo, list[dict[str, Any]]]] = {}
    swapped_in: list[str] = []
    for service, (db, entries) in plan.databases.items():
        left: list[dict[str, Any]] = []
        for entry in entries:
            target = loaded.get(entry["archive_name"])
            if target is None or not _swapped_in(client, target, guard, changes):
                left.append(entry)
                continue
            swapped_in.append(target.names.database)
        if left:
            rest[service] = (db, left)
    return rest, swapped_in


def _swapped_in(
    client: docker.DockerClient, target: ShadowTarget, guard: StepGuard, changes: Changes
) -> bool:
    """Swap TARGET's shadow database in; False: nothing moved, its dump is
    to be loaded instead (and the outcome says why)."""
    names, db = target.names, target.db
    try:
        swap = plan_swap(client, db, names)
    except DatabaseRestoreError as exc:
        logger.warning("database %s is loaded in the downtime: %s", names.database, exc)
        return False
    guard(steps.DATABASE, {"container": db.container.id, "running": True, "swap": {
        **asdict(names), "charset": swap.record.charset, "collation": swap.record.collation,
    }})  # fmt: skip
    try:
        run_swap(client, db, swap)
    except DatabaseRestoreError as exc:
        try:
            moved = swapped(client, db, names)
        except DatabaseRestoreError:
            moved = True  # cannot tell: the rollback's swap back finds out
        if moved:
            changes.database_swaps.append((db, swap.record))
            raise
        logger.warning("database %s is loaded in the downtime: %s", names.database, exc)
        return False
    changes.database_swaps.append((db, swap.record))
    return True
