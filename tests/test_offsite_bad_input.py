"""Bad off-site settings against real servers: wrong credentials (s3rver,
which checks them), a missing bucket (moto), an unreachable endpoint (a
port nothing listens on). Each gives an error naming the location, never
the secret, and leaves no completed-looking snapshot:

- `local+s3`: the snapshot stays a completed *local* snapshot (its local
  copy is whole and verified by the backup itself); its off-site copy is
  marked failed with the reason, and the upload run failed;
- `s3`: the snapshot was to have no local copy, so it fails like a backup
  that could not store its archive, and its staged local files go."""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

import pytest

from snapshots.models import Run, Snapshot
from snapshots.models_offsite import OffsiteCopy
from snapshots.selectors_offsite import where
from snapshots.services.offsite import request_upload, run_upload
from tests.offsite_helpers import PART_MB, configure_s3, moto, s3_env, s3rver, stored_snapshot
from tests.s3_servers import S3Server, free_port

pytestmark = pytest.mark.django_db(transaction=True)
__all__ = ["moto", "s3rver"]
SECRET = "SeCrEt" + secrets.token_hex(8)  # the secret key given; must appear nowhere


def _wrong_credentials(s3rver: S3Server, moto: S3Server) -> tuple[dict[str, str], str]:
    bucket = s3rver.new_bucket()
    # s3rver checks the access key id (not the signature): a wrong pair.
    env = s3_env(s3rver, bucket) | {
        "BACKUP_S3_ACCESS_KEY_ID": "WRONGKEY", "BACKUP_S3_SECRET_ACCESS_KEY": SECRET,
    }  # fmt: skip
    return env, "access denied"


def _missing_bucket(s3rver: S3Server, moto: S3Server) -> tuple[dict[str, str], str]:
    env = s3_env(moto, "no-such-bucket-" + secrets.token_hex(4))
    return env | {"BACKUP_S3_SECRET_ACCESS_KEY": SECRET}, "does not exist"


def _unreachable(s3rver: S3Server, moto: S3Server) -> tuple[dict[str, str], str]:
    env = s3_env(moto, "some-bucket", endpoint=f"http://127.0.0.1:{free_port()}")
    return env | {"BACKUP_S3_SECRET_ACCESS_KEY": SECRET}, "cannot reach the endpoint"


CASES = {"wrong_credentials": _wrong_credentials, "missing_bucket": _missing_bucket,
         "unreachable_endpoint": _unreachable}  # fmt: skip


def _everything_said(run: Run, snapshot: Snapshot, caplog: Any) -> str:
    copies = " ".join(c.error for c in OffsiteCopy.objects.filter(snapshot=snapshot))
    return " ".join([run.error, str(run.result), snapshot.error, copies, caplog.text])


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("location", ["local+s3", "s3"])
def test_bad_offsite_settings_fail_clearly_and_leave_nothing_completed_looking(
    case: str, location: str, s3rver: S3Server, moto: S3Server, settings: Any, tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    settings.BACKUP_ROOT = tmp_path / "backups"
    env, reason = CASES[case](s3rver, moto)
    configure_s3(settings, env)
    data = os.urandom(PART_MB * 1024 * 1024 + 10)  # a multipart upload, where it gets that far
    snapshot = stored_snapshot(data, location=location)
    run = run_upload(str(request_upload(snapshot).pk))
    snapshot.refresh_from_db()

    assert run.state == Run.State.FAILED
    assert "storage 's3'" in run.error and reason in run.error, run.error
    copy = OffsiteCopy.objects.get(snapshot=snapshot)
    assert copy.state == OffsiteCopy.State.FAILED and "storage 's3'" in copy.error
    assert SECRET not in _everything_said(run, snapshot, caplog)
    local_file = settings.BACKUP_ROOT / snapshot.storage_key
    if location == "local+s3":
        assert snapshot.status == Snapshot.Status.COMPLETED and local_file.read_bytes() == data
        assert [(c["location"], c["state"]) for c in where(snapshot)] == [
            ("local", "stored"), ("s3", "failed"),
        ]  # fmt: skip
    else:
        assert snapshot.status == Snapshot.Status.FAILED
        assert "storage 's3'" in snapshot.error and not local_file.exists()
        assert where(snapshot) == [{"location": "s3", "state": "failed", "bytes_done": 0,
                                    "error": copy.error, "verified_at": None}]  # fmt: skip
