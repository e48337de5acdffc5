"""POST snapshots/<id>/verify through the API with a real `s3` location, on
each real server (moto, s3rver): the report shows each copy's check
(`copies`) and which copy the main check read (`read_from`); a copy wrong
behind our back is named in the answer; a local-only snapshot's report has
neither. The OpenAPI schema documents both fields."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from snapshots.models import Run, Snapshot
from snapshots.services.offsite import request_upload, run_upload
from tests.api.conftest import API, envelope
from tests.offsite_helpers import PART_MB, moto, s3_location, s3rver, stored_snapshot

pytestmark = pytest.mark.django_db(transaction=True)  # the upload's progress thread writes rows
__all__ = ["moto", "s3_location", "s3rver"]
SIZE = PART_MB * 1024 * 1024 + 999  # two parts: a multipart object


def _uploaded(location: str) -> Snapshot:
    snapshot = stored_snapshot(os.urandom(SIZE), location=location)
    run = run_upload(str(request_upload(snapshot).pk))
    assert run.state == Run.State.COMPLETED, run.error
    return snapshot


def _verify(api: APIClient, snapshot: Snapshot) -> dict[str, Any]:
    response = api.post(f"{API}/snapshots/{snapshot.backup_id}/verify", {}, format="json")
    return envelope(response, 200)


def _by_location(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {copy["location"]: copy for copy in report["copies"]}


def test_quick_verify_answers_with_each_copy_and_where_it_read(
    api: APIClient, s3_location: dict[str, Any]
) -> None:
    snapshot = _uploaded("local+s3")
    report = _verify(api, snapshot)
    assert report["valid"] is True and report["read_from"] == "local"
    copies = _by_location(report)
    assert copies["local"] == {
        "location": "local", "checked": "read", "ok": True, "error": "", "size_bytes": SIZE,
    }  # fmt: skip
    assert copies["s3"] == {
        "location": "s3", "checked": "head", "state": "verified", "ok": True, "error": "",
        "size_bytes": SIZE,
    }  # fmt: skip


def test_an_s3_copy_deleted_behind_its_back_is_named_in_the_answer(
    api: APIClient, s3_location: dict[str, Any]
) -> None:
    snapshot = _uploaded("local+s3")
    s3_location["client"].delete_object(Bucket=s3_location["bucket"], Key=snapshot.storage_key)
    report = _verify(api, snapshot)
    assert report["valid"] is False
    assert report["errors"] == ["copy 's3': the archive is missing"]
    copies = _by_location(report)
    assert copies["s3"]["ok"] is False and copies["s3"]["checked"] == "head"
    assert copies["local"]["ok"] is True


def test_an_s3_only_snapshot_is_read_from_s3(
    api: APIClient, s3_location: dict[str, Any], settings: Any
) -> None:
    snapshot = _uploaded("s3")
    assert not (Path(settings.BACKUP_ROOT) / snapshot.storage_key).exists()
    report = _verify(api, snapshot)
    assert report["valid"] is True and report["checksum_match"] is True
    assert report["read_from"] == "s3"
    assert [(c["location"], c["checked"], c["ok"]) for c in report["copies"]] == [
        ("s3", "read+head", True)
    ]


def test_a_local_only_snapshot_has_neither_field(
    api: APIClient, s3_location: dict[str, Any]
) -> None:
    report = _verify(api, stored_snapshot(os.urandom(100), location="local"))
    assert report["valid"] is True
    assert "copies" not in report and "read_from" not in report


def test_the_schema_documents_copies_and_read_from(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(out))
    components = yaml.safe_load(out.read_text())["components"]["schemas"]
    report = components["VerifyReport"]["properties"]
    assert report["copies"]["type"] == "array"
    assert report["copies"]["items"] == {"$ref": "#/components/schemas/CopyCheck"}
    assert report["read_from"]["type"] == "string"
    assert not {"copies", "read_from"} & set(components["VerifyReport"]["required"])
    check = components["CopyCheck"]
    assert set(check["properties"]) == {
        "location", "checked", "state", "ok", "error", "size_bytes",
    }  # fmt: skip
    assert check["properties"]["ok"]["nullable"] is True
    assert set(check["required"]) == {"location", "checked", "ok", "error"}
