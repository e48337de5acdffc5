"""The snapshots admin's verify action names a backup id as it is spelled:
Django's admin capitalises the first letter of every message, so one that
began with the id showed "Backup_2026…", an id that does not exist (found
using the product through its admin). Real archive files, the real admin
through Django's client, the page as rendered."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client

from snapshots.models import Snapshot

pytestmark = pytest.mark.django_db

SNAPSHOTS = "/admin/snapshots/snapshot/"


def test_verify_messages_show_the_backup_id_unchanged(
    admin_client: Client, stored_snapshot: Callable[..., Snapshot], backup_root: Path
) -> None:
    good = stored_snapshot(b"good archive")
    bad = stored_snapshot(b"bad archive")
    (backup_root / bad.storage_key).write_bytes(b"bad archivE")
    response = admin_client.post(
        SNAPSHOTS, {"action": "verify_quick", "_selected_action": [good.pk, bad.pk]}, follow=True
    )
    shown = re.findall(r'<li class="\w+">(.*?)</li>', response.content.decode(), re.S)
    text = " | ".join(shown)
    assert f"{good.backup_id}: valid" in text, text
    assert f"{bad.backup_id}: NOT valid" in text, text
    assert good.backup_id.capitalize() not in text and bad.backup_id.capitalize() not in text
