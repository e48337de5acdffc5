"""The snapshot admin shows off-site copies, rendered by Django's test client:
on the snapshot's page each copy's location, key, state, bytes uploaded,
parts, completed time and last error (a real upload to moto for the
verified one, the ledger's own rows for one in progress); in the list an
off-site column and a filter by the copies' state."""

from __future__ import annotations

import html
import os
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from snapshots.models import Run
from snapshots.models_offsite import OffsiteCopy
from snapshots.offsite_ledger import DjangoPartLedger
from snapshots.services.offsite import request_upload, run_upload
from storage.s3_ledger import UploadState
from tests.offsite_helpers import PART_MB, moto, offsite, stored_snapshot

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["moto", "offsite"]
SNAPSHOTS = "/admin/snapshots/snapshot/"
MIB = 1024 * 1024


def test_snapshot_page_and_list_show_offsite_copies(
    admin_client: Client, offsite: dict[str, Any]
) -> None:
    size = 2 * PART_MB * MIB + 1000  # three parts
    done = stored_snapshot(os.urandom(size), location="local+s3", app_id="shop")
    assert run_upload(str(request_upload(done).pk)).state == Run.State.COMPLETED

    busy = stored_snapshot(os.urandom(1000), location="local+s3", app_id="blog")
    request_upload(busy)
    copy = OffsiteCopy.objects.get(snapshot=busy)
    ledger = DjangoPartLedger(copy.pk)
    ledger.start(UploadState(copy.key, "up-7", 12 * MIB, 5 * MIB, busy.sha256, "m", 1.0))
    ledger.record("up-7", 1, 5 * MIB, "md5:" + "a" * 32, '"e1"')
    ledger.record("up-7", 2, 5 * MIB, "md5:" + "b" * 32, '"e2"')

    failed = stored_snapshot(os.urandom(1000), location="local+s3", app_id="wiki")
    request_upload(failed)
    OffsiteCopy.objects.filter(snapshot=failed).update(
        state=OffsiteCopy.State.FAILED,
        error="storage 's3' (S3 bucket 'b' at http://x): access denied (InvalidAccessKeyId)",
    )
    local_only = stored_snapshot(b"x", location="local", app_id="notes")

    page = html.unescape(admin_client.get(f"{SNAPSHOTS}{done.pk}/change/").content.decode())
    assert "Off-site copies" in page
    for header in ("Location", "Key", "State", "Bytes uploaded", "Parts", "Completed at",
                   "Last error"):  # fmt: skip
        assert header in page, header
    verified = OffsiteCopy.objects.get(snapshot=done)
    assert done.storage_key in page and "Verified" in page
    assert "10.0 MiB of 10.0 MiB (100%)" in page
    assert "3 of 5.0 MiB" in page  # three parts of 5 MiB
    assert verified.verified_at is not None
    assert f"{timezone.localtime(verified.verified_at):%Y-%m-%d %H:%M:%S}" in page

    page = html.unescape(admin_client.get(f"{SNAPSHOTS}{busy.pk}/change/").content.decode())
    assert "Uploading" in page and "10.0 MiB of 12.0 MiB (83%)" in page
    assert "2 of 3 acknowledged" in page

    page = html.unescape(admin_client.get(f"{SNAPSHOTS}{failed.pk}/change/").content.decode())
    assert "Failed" in page and "access denied (InvalidAccessKeyId)" in page

    listing = admin_client.get(SNAPSHOTS).content.decode()
    assert "By off-site copy" in listing
    assert 'class="field-offsite">s3: verified</td>' in listing
    assert 'class="field-offsite">s3: uploading</td>' in listing
    assert 'class="field-offsite">s3: failed</td>' in listing
    for value, shown in (("verified", done), ("in_progress", busy), ("failed", failed),
                         ("none", local_only)):  # fmt: skip
        filtered = admin_client.get(SNAPSHOTS, {"offsite": value}).content.decode()
        others = {done, busy, failed, local_only} - {shown}
        assert shown.backup_id in filtered, value
        assert not [s.backup_id for s in others if s.backup_id in filtered], value
