"""Verify each copy of a snapshot stored at `local+<s3>` or `<s3>`.

The main check (services.verify) reads one copy: the first there is, local
first (no egress). That says nothing of the others, so each copy gets a
check of its own, reported by location:

- the local copy: its bytes' size and SHA-256 (and sidecar): the main
  check's result when it read the local copy, else "missing";
- each off-site copy: a HEAD, its size and the SHA-256 it carries (object
  metadata, or its sidecar object: storage.s3_metadata) against the
  snapshot's; the main check's read too when it read that copy.

A copy the snapshot should have (local of `local+s3`, an off-site copy its
row says is verified) that is missing or wrong fails the verification,
naming the copy. An off-site copy not uploaded yet, or whose upload failed,
is reported with its state and fails nothing: the snapshot's good copies
are as good as ever, and the upload's own state already says so."""

from __future__ import annotations

from typing import Any

from engine.errors import ChecksumMismatch, EngineError, ObjectNotFound
from engine.verify import VerifyResult
from snapshots.models import Snapshot
from snapshots.models_offsite import OffsiteCopy
from snapshots.storage_locations import (
    LOCAL,
    get_backend,
    keeps_local_copy,
    offsite_targets,
)


def read_copy(snapshot: Snapshot) -> str:
    """The copy the main check reads (as storage.copies.CopiesStorage does):
    the local one when it is there, else the first off-site one."""
    targets = offsite_targets(snapshot.storage_location)
    if not targets or _exists(LOCAL, snapshot.storage_key):
        return LOCAL
    return targets[0]


def check_copies(snapshot: Snapshot, read_from: str, result: VerifyResult) -> list[dict[str, Any]]:
    """One report per copy: location, checked ("read": size + SHA-256 of the
    bytes; "head": size + stored SHA-256; None: not checked), ok (None: not
    checked) and error (the reason, naming the copy)."""
    location = snapshot.storage_location
    reports: list[dict[str, Any]] = []
    if keeps_local_copy(location) or read_from == LOCAL:
        reports.append(_local_report(snapshot, read_from, result))
    states = {copy.location: copy.state for copy in OffsiteCopy.objects.filter(snapshot=snapshot)}
    for name in offsite_targets(location):
        report = _offsite_report(snapshot, name, states.get(name))
        if read_from == name and report["ok"] is not False:
            report.update(checked="read+head", **_read_outcome(name, result))
        reports.append(report)
    return reports


def _local_report(snapshot: Snapshot, read_from: str, result: VerifyResult) -> dict[str, Any]:
    report: dict[str, Any] = {"location": LOCAL, "checked": "read"}
    if read_from != LOCAL:
        return report | {"ok": False, "error": f"copy {LOCAL!r}: the archive is missing"}
    return report | _read_outcome(LOCAL, result)


def _read_outcome(name: str, result: VerifyResult) -> dict[str, Any]:
    if result.valid:
        return {"ok": True, "error": "", "size_bytes": result.size_bytes}
    return {
        "ok": False,
        "size_bytes": result.size_bytes,
        "error": f"copy {name!r}: " + "; ".join(result.errors[:3]),
    }


def _offsite_report(snapshot: Snapshot, name: str, state: str | None) -> dict[str, Any]:
    report: dict[str, Any] = {"location": name, "checked": "head", "state": state or "none"}
    expected = state == OffsiteCopy.State.VERIFIED
    try:
        backend = get_backend(name)
        verify = getattr(backend, "verify", None)
        if verify is not None:
            info = verify(snapshot.storage_key, snapshot.sha256)  # HEAD: stored SHA-256
        else:
            info = backend.stat(snapshot.storage_key)  # a backend without one: the size only
    except ObjectNotFound:
        if not expected:
            return report | {"checked": None, "ok": None, "error": ""}
        return report | {"ok": False, "error": f"copy {name!r}: the archive is missing"}
    except (ChecksumMismatch, EngineError) as exc:
        return report | {"ok": False, "error": f"copy {name!r}: {exc}"}
    if info.size != snapshot.size_bytes:
        return report | {
            "ok": False,
            "size_bytes": info.size,
            "error": f"copy {name!r}: {info.size} bytes, expected {snapshot.size_bytes}",
        }
    return report | {"ok": True, "error": "", "size_bytes": info.size}


def _exists(name: str, key: str) -> bool:
    try:
        return get_backend(name).exists(key)
    except (EngineError, ValueError):
        return False
