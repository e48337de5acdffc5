"""The restore's database loads while the app runs (engine.dumps.mysql_shadow):
which dumps go into a shadow database, the loads themselves, each on a
thread of its own started as soon as the staging pass has spooled its dump
(dumps come before the volumes in the archive, so a load runs beside the
volumes' extraction), and dropping the shadow databases afterwards.

The threads do data work only: they report nothing and journal nothing.
What they are about to make is journaled by the caller before the staging
pass starts (steps.SHADOW: fixed names, which recovery drops), and their
outcome is read once they have ended (wait). A dump that cannot take this
way is loaded in the downtime as before; `skipped` says why, for the result.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import docker

from engine.dumps.mysql_shadow import ShadowNames, drop, load_shadow, why_not_shadow
from engine.dumps.types import DatabaseRestoreError, with_password_file
from engine.errors import brief
from engine.inventory import DatabaseInfo
from engine.restore.plan import RestorePlan
from engine.restore.volume_users import databases_kept_running

logger = logging.getLogger(__name__)

ENGINES = ("mysql", "mariadb")
DATADIR = "/var/lib/mysql"  # where the images keep their data (the shadow's room is read there)
HEADROOM_BYTES = 256 << 20  # left free for the running app beside the shadow copy
ROOM_FACTOR = 2  # a loaded table takes up to about twice its dump (indexes, pages)


@dataclass(frozen=True)
class ShadowTarget:
    """One dump to load into a shadow database of its own."""

    service: str
    db: DatabaseInfo
    archive_name: str
    names: ShadowNames


@dataclass
class ShadowLoads:
    client: docker.DockerClient
    targets: dict[str, ShadowTarget]  # archive name -> its target
    skipped: list[str] = field(default_factory=list)  # why a dump is loaded in the downtime
    seconds: dict[str, float] = field(default_factory=dict)  # archive name -> its load's time
    _cancel: threading.Event = field(default_factory=threading.Event)
    _threads: dict[str, threading.Thread] = field(default_factory=dict)
    _errors: dict[str, str] = field(default_factory=dict)
    _ready: dict[str, DatabaseInfo] = field(default_factory=dict)  # its password read

    def journal(self) -> dict[str, Any]:
        """steps.SHADOW's details: every database a load may make."""
        return {"databases": [
            {"container": t.db.container.id, "database": t.names.database,
             "shadow": t.names.shadow, "aside": t.names.aside}
            for t in self.targets.values()
        ]}  # fmt: skip

    def spooled(self, name: str, path: Path) -> None:
        """The staging pass has written member NAME to PATH (on its
        extracting thread: only a thread is started here)."""
        target = self.targets.get(name)
        if target is None or name in self._threads or self._cancel.is_set():
            return
        thread = threading.Thread(
            target=self._load, args=(target, path), name="restore-shadow", daemon=True
        )
        self._threads[name] = thread
        thread.start()

    def _load(self, target: ShadowTarget, path: Path) -> None:
        began = time.monotonic()
        try:
            why = why_not_shadow(path, target.names.database)
            if why is not None:
                self._errors[target.archive_name] = why
                return
            db = with_password_file(self.client, target.db, DatabaseRestoreError)
            load_shadow(self.client, db, path, target.names, self._cancel)
            self._ready[target.archive_name] = db
        except Exception as exc:  # a load that fails leaves the dump to the downtime
            self._errors[target.archive_name] = brief(exc)
        finally:
            self.seconds[target.archive_name] = round(time.monotonic() - began, 3)

    def wait(self) -> dict[str, ShadowTarget]:
        """Once every load has ended: the dumps loaded (archive name ->
        target, its db with its password); the others are in `skipped`."""
        for thread in self._threads.values():
            thread.join()
        loaded: dict[str, ShadowTarget] = {}
        for name, target in self.targets.items():
            if name in self._ready:
                loaded[name] = replace(target, db=self._ready[name])
                continue
            why = self._errors.get(name, "its dump was not ahead of the volumes in the archive")
            self.skipped.append(f"{target.names.database} in {target.db.container.name}: {why}")
            logger.info("database %s loaded in the downtime: %s", target.names.database, why)
        return loaded

    def cancel(self) -> None:
        """Stop the loads (the staging pass failed) and wait for them."""
        self._cancel.set()
        for thread in self._threads.values():
            thread.join()

    def drop(self, keep: Collection[str] = ()) -> list[str]:
        """Drop every shadow and aside database the loads and swaps made but
        those of a swap whose aside database is in KEEP (not swapped back:
        it holds the app's previous tables). Never raises: returns what was
        left, and why."""
        left: list[str] = []
        by_container: dict[str, list[ShadowTarget]] = {}
        for target in self.targets.values():
            if target.names.aside in keep:
                left.append(
                    f"databases {target.names.shadow}, {target.names.aside} in "
                    f"{target.db.container.name} (the app's previous tables are in "
                    f"{target.names.aside})"
                )
                continue
            by_container.setdefault(target.db.container.id, []).append(target)
        for targets in by_container.values():
            db = self._ready.get(targets[0].archive_name) or targets[0].db
            names = [t.names for t in targets]
            try:
                if db.credentials.password is None:
                    db = with_password_file(self.client, db, DatabaseRestoreError)
                drop(self.client, db, names)
            except Exception as exc:
                what = ", ".join(f"{n.shadow}, {n.aside}" for n in names)
                logger.error("databases %s in %s left: %s", what, db.container.name, brief(exc))
                left.append(f"databases {what} in {db.container.name} ({brief(exc)})")
        return left


def plan_shadow_loads(
    client: docker.DockerClient, plan: RestorePlan, token: str, enabled: bool = True
) -> ShadowLoads | None:
    """The dumps of PLAN to load while the app runs (None: none), named
    after TOKEN (unique to the run). A dump goes there when its server is
    MySQL or MariaDB, its container stays running through the restore
    (volume_users.databases_kept_running) and its data filesystem has room
    for a second copy."""
    if not enabled or not plan.databases:
        return None
    loads = ShadowLoads(client, {})
    for service, (db, entries) in plan.databases.items():
        if db.engine not in ENGINES:
            continue  # loaded in the downtime, as before
        if not databases_kept_running(client, [db], plan.raw_volumes):
            loads.skipped.append(f"{db.container.name}: it is stopped for the restore")
            continue
        size = sum(int(entry.get("size") or 0) for entry in entries)
        if (why := _why_no_room(client, db, size)) is not None:
            loads.skipped.append(f"{db.container.name}: {why}")
            continue
        for entry in entries:
            if entry.get("format") != "sql" or not entry.get("database"):
                continue
            names = ShadowNames.for_dump(entry["database"], f"{token}_{len(loads.targets)}")
            loads.targets[entry["archive_name"]] = ShadowTarget(
                service, db, entry["archive_name"], names
            )
    return loads if loads.targets or loads.skipped else None


def _why_no_room(client: docker.DockerClient, db: DatabaseInfo, size: int) -> str | None:
    """Why DB's data filesystem cannot take a shadow copy of SIZE dump bytes."""
    try:
        mounts: list[Mapping[str, Any]] = (
            client.api.inspect_container(db.container.id).get("Mounts") or []
        )
        source = next(m.get("Source") for m in mounts if m.get("Destination") == DATADIR)
        stat = os.statvfs(source)
    except StopIteration:
        return f"its data ({DATADIR}) is not on a volume or bind mount: its free space is unknown"
    except Exception as exc:  # the engine or the path away: loaded in the downtime
        return f"its free space cannot be read: {brief(exc)}"
    free = stat.f_bavail * stat.f_frsize
    need = size * ROOM_FACTOR + HEADROOM_BYTES
    if free < need:
        return (
            f"a second copy of its databases needs {need >> 20} MiB and its filesystem has "
            f"{free >> 20} MiB free"
        )
    return None
