"""S3 locations from the environment (backup_project.s3_settings): strict
parsing whose errors name the variable and never the secret; secrets from
*_FILE; more named locations; the storage locations they make."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from backup_project.env import Env
from backup_project.s3_settings import s3_locations
from snapshots.storage_locations import (
    UnknownStorageLocation,
    get_storage,
    keeps_local_copy,
    offsite_targets,
    storage_names,
)
from storage.copies import CopiesStorage

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
BASE = {
    "BACKUP_S3_BUCKET": "my-backups",
    "BACKUP_S3_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "BACKUP_S3_SECRET_ACCESS_KEY": SECRET,
}


def parse(**changes: str | None) -> dict[str, dict[str, Any]]:
    environ = {k: v for k, v in (BASE | changes).items() if v is not None}
    return s3_locations(Env(environ))


def test_nothing_set_means_no_s3_location() -> None:
    assert s3_locations(Env({})) == {}


def test_the_default_location_with_its_defaults() -> None:
    location = parse()["s3"]
    assert location["bucket"] == "my-backups" and location["region"] == "us-east-1"
    assert location["endpoint_url"] is None and location["prefix"] == ""
    assert location["addressing_style"] == "path" and location["part_size"] == 8 * 1024 * 1024
    assert location["secret_key"] == SECRET and location["name"] == "s3"


def test_secrets_from_files(tmp_path: Path) -> None:
    (tmp_path / "id").write_text("AKIAFROMFILE\n")
    (tmp_path / "secret").write_text(SECRET + "\n")
    location = parse(
        BACKUP_S3_ACCESS_KEY_ID=None, BACKUP_S3_SECRET_ACCESS_KEY=None,
        BACKUP_S3_ACCESS_KEY_ID_FILE=str(tmp_path / "id"),
        BACKUP_S3_SECRET_ACCESS_KEY_FILE=str(tmp_path / "secret"),
    )["s3"]  # fmt: skip
    assert (location["access_key"], location["secret_key"]) == ("AKIAFROMFILE", SECRET)


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"BACKUP_S3_BUCKET": "Bad_Bucket"}, "BACKUP_S3_BUCKET"),
        ({"BACKUP_S3_REGION": "us east"}, "BACKUP_S3_REGION"),
        ({"BACKUP_S3_ENDPOINT_URL": "ftp://x"}, "BACKUP_S3_ENDPOINT_URL"),
        (
            {"BACKUP_S3_ENDPOINT_URL": f"https://AKIA:{SECRET}@s3.example.com"},
            "BACKUP_S3_ENDPOINT_URL",
        ),
        ({"BACKUP_S3_ADDRESSING_STYLE": "sideways"}, "BACKUP_S3_ADDRESSING_STYLE"),
        ({"BACKUP_S3_CHECKSUMS": "always"}, "BACKUP_S3_CHECKSUMS"),
        ({"BACKUP_S3_PART_SIZE_MB": "4"}, "BACKUP_S3_PART_SIZE_MB"),
        ({"BACKUP_S3_PREFIX": "/abs"}, "BACKUP_S3_PREFIX"),
        ({"BACKUP_S3_PREFIX": "a/../b"}, "BACKUP_S3_PREFIX"),
        ({"BACKUP_S3_ACCESS_KEY_ID": None}, "BACKUP_S3_ACCESS_KEY_ID"),
        ({"BACKUP_S3_SECRET_ACCESS_KEY": None}, "BACKUP_S3_SECRET_ACCESS_KEY"),
        ({"BACKUP_S3_BUCKET": None}, "BACKUP_S3_BUCKET is not"),  # keys but no bucket
        ({"BACKUP_S3_SECRET_ACCESS_KEY_FILE": "/nonexistent"}, "BACKUP_S3_SECRET_ACCESS_KEY"),
        ({"BACKUP_S3_LOCATIONS": "cold"}, "BACKUP_S3_COLD_BUCKET"),
        ({"BACKUP_S3_LOCATIONS": "local"}, "BACKUP_S3_LOCATIONS"),
        ({"BACKUP_S3_LOCATIONS": "a+b"}, "BACKUP_S3_LOCATIONS"),
    ],
)
def test_malformed_values_stop_startup_naming_the_variable_not_the_secret(
    changes: dict[str, str | None], variable: str
) -> None:
    with pytest.raises(ImproperlyConfigured) as error:
        parse(**changes)
    assert variable in str(error.value)
    assert SECRET not in str(error.value)


def test_more_named_locations() -> None:
    locations = parse(
        BACKUP_S3_LOCATIONS="cold-archive", BACKUP_S3_COLD_ARCHIVE_BUCKET="cold",
        BACKUP_S3_COLD_ARCHIVE_ENDPOINT_URL="https://minio.internal:9000/",
        BACKUP_S3_COLD_ARCHIVE_PREFIX="backups",
    )  # fmt: skip
    cold = locations["cold-archive"]
    assert (cold["bucket"], cold["endpoint_url"], cold["prefix"]) == (
        "cold", "https://minio.internal:9000", "backups/",
    )  # fmt: skip
    assert cold["access_key"] is None and cold["name"] == "cold-archive"


def test_storage_locations_made_of_them(settings: Any, tmp_path: Path) -> None:
    settings.BACKUP_ROOT = tmp_path
    settings.BACKUP_S3_STORAGES = parse(
        BACKUP_S3_LOCATIONS="cold", BACKUP_S3_COLD_BUCKET="cold-bucket"
    )
    assert storage_names() == ["local", "s3", "cold", "local+s3", "local+cold"]
    assert offsite_targets("local+cold") == ["cold"] and offsite_targets("local") == []
    assert keeps_local_copy("local+s3") and not keeps_local_copy("s3")
    compound = get_storage("local+s3")
    assert isinstance(compound, CopiesStorage)
    assert [m.name for m in compound.members] == ["local", "s3"]
    assert SECRET not in repr(compound.members[1].config)  # type: ignore[attr-defined]
    with pytest.raises(UnknownStorageLocation, match="local\\+cold"):
        get_storage("local+warm")
