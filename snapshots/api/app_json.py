"""GET apps' entries written as plain dicts: the same output as
serializers.AppSerializer (which stays the schema's description), without
DRF's per-field machinery, which took two thirds of a 400-app listing's
time (bench/bench_fleet.py). An app on a host is written straight from its
stored inventory JSON (inventory_fields), not through the objects
fleet.inventory_store builds: that took another third. tests/api/
test_app_json.py keeps all of them equal."""

from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from drills.selectors import last_app_drills
from fleet.selectors import HostState, hosted_inventories
from snapshots.api.envelope import EncodedJson
from snapshots.selectors import AppSummary, BackupStats, absent_apps, backup_stats

_DATETIME = serializers.DateTimeField()  # the API's datetime format, as the serializers write it


# (host id, app id) -> (its inventory's JSON text, the entry's inventory
# fields, those fields encoded): an inventory changes seldom (a worker
# rewrites it every minute, mostly the same), so each process decodes,
# reshapes and encodes only the ones that changed; a text compare is a tenth
# of a decode (bench/bench_fleet.py).
_SHAPED: dict[tuple[str, str], tuple[str, dict[str, Any], str]] = {}
_SHAPED_MAX = 20_000  # entries; beyond it (apps come and go) it starts afresh
# As the API's JSONRenderer writes (compact, UTF-8 text, no NaN).
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

# An entry in three parts: its head (ids, host), its inventory part (fields,
# encoded; None for an app on no host, whose head is the whole entry), its
# tail (backups, last drill).
Entry = tuple[dict[str, Any], tuple[dict[str, Any], str] | None, dict[str, Any]]


def list_apps_json(host_id: str | None = None) -> list[dict[str, Any]]:
    """GET apps' entries (of HOST_ID's apps only when given), by app id then
    host id: what selectors.list_apps lists, written as app_json writes it.
    Four queries whatever the number of apps."""
    return [{**head, **(inventory[0] if inventory else {}), **tail}
            for head, inventory, tail in _entries(host_id)]  # fmt: skip


def list_apps_encoded(host_id: str | None = None) -> EncodedJson:
    """{"total": n, "apps": list_apps_json(HOST_ID)} as JSON text, each
    entry's inventory part spliced in as it was encoded when it last changed
    (encoding the 356 KB of 400 apps was a third of the request's time)."""
    parts = []
    for head, inventory, tail in _entries(host_id):
        if inventory is None:
            parts.append(_encode(head))
        else:
            parts.append(f"{_encode(head)[:-1]},{inventory[1]},{_encode(tail)[1:]}")
    return EncodedJson(f'{{"total":{len(parts)},"apps":[{",".join(parts)}]}}')


def _entries(host_id: str | None) -> list[Entry]:
    stats = backup_stats()
    stored = hosted_inventories(host_id)
    absent = absent_apps(stats, {(app_id, state.host.id) for state, app_id, _ in stored}, host_id)
    drills = last_app_drills(
        sorted({app_id for _, app_id, _ in stored} | {a.app_id for a in absent})
    )
    if len(_SHAPED) > _SHAPED_MAX:
        _SHAPED.clear()
    hosts: dict[str, dict[str, Any]] = {}
    entries: list[tuple[str, str, Entry]] = [
        (app_id, state.host.id, (
            {"app_id": app_id, "present": True, **_host_fields(hosts, state)},
            _inventory_part(state.host.id, app_id, text),
            {"backups": _backups(stats.get((app_id, state.host.id)) or BackupStats()),
             "last_drill": drills.get(app_id)},
        ))
        for state, app_id, text in stored
    ]  # fmt: skip
    entries += [
        (a.app_id, a.host_id or "", (app_json(a, drills.get(a.app_id)), None, {})) for a in absent
    ]
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    return [entry for _, _, entry in entries]


def _host_fields(known: dict[str, dict[str, Any]], state: HostState) -> dict[str, Any]:
    """The host part of an entry, once per host (KNOWN caches it)."""
    found = known.get(state.host.id)
    if found is None:
        found = known[state.host.id] = {
            "host_id": state.host.id, "host_online": state.online,
            "inventory_age_seconds": state.inventory_age_seconds,
            "inventory_stale": state.inventory_stale,
        }  # fmt: skip
    return found


def _inventory_part(host_id: str, app_id: str, text: str) -> tuple[dict[str, Any], str]:
    """inventory_fields of the stored inventory TEXT and those fields
    encoded (without the braces), made only when TEXT changed. Shared
    between requests: never changed."""
    key = (host_id, app_id)
    known = _SHAPED.get(key)
    if known is not None and known[0] == text:
        return known[1], known[2]
    fields = inventory_fields(json.loads(text))
    encoded = _encode(fields)[1:-1]
    _SHAPED[key] = (text, fields, encoded)
    return fields, encoded


def inventory_fields(data: dict[str, Any]) -> dict[str, Any]:
    """An entry's working_dir, containers, volumes, databases and config
    files from a stored inventory (fleet.inventory_store.to_json's shape)."""
    return {
        "working_dir": data.get("working_dir"),
        "containers": [
            {
                "name": c["name"],
                "service": c["service"],
                "image": c["image"],
                "state": c["state"],
                "one_off": c["one_off"],
            }
            for c in data.get("containers", ())
        ],
        "volumes": [
            {"name": v["name"], "size_bytes": v.get("size_bytes")} for v in data.get("volumes", ())
        ],
        "databases": [
            {
                "container": d["container"]["name"],
                "service": d["container"]["service"],
                "engine": d["engine"],
                "databases": list(d.get("databases", ())),
            }
            for d in data.get("databases", ())
        ],
        "config_files": [
            {"name": f["archive_name"], "path": f["path"]} for f in data.get("config_files", ())
        ],
    }


def _backups(backups: BackupStats) -> dict[str, Any]:
    last = backups.last_backup_at
    return {
        "snapshots": backups.snapshots,
        "size_bytes": backups.size_bytes,
        "last_backup_at": None if last is None else _DATETIME.to_representation(last),
    }


def app_json(app: AppSummary, last_drill: dict[str, Any] | None) -> dict[str, Any]:
    host = app.host
    return {
        "app_id": app.app_id,
        "present": app.present,
        "host_id": app.host_id,
        "host_online": None if host is None else host.online,
        "inventory_age_seconds": None if host is None else host.inventory_age_seconds,
        "inventory_stale": None if host is None else host.inventory_stale,
        "working_dir": app.working_dir,
        "containers": [
            {
                "name": c.name,
                "service": c.service,
                "image": c.image,
                "state": c.state,
                "one_off": c.one_off,
            }
            for c in app.containers
        ],
        "volumes": [{"name": v.name, "size_bytes": v.size_bytes} for v in app.volumes],
        "databases": [
            {
                "container": d.container.name,
                "service": d.container.service,
                "engine": d.engine,
                "databases": list(d.databases),
            }
            for d in app.databases
        ],
        "config_files": [{"name": f.archive_name, "path": f.path} for f in app.config_files],
        "backups": _backups(app.backups),
        "last_drill": last_drill,
    }
