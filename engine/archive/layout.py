"""Names inside an archive (format v1).

    backup.json                         what is inside: app, volumes, databases, config
    containers.json                     how to recreate the app's containers, networks and
                                        volumes on another host (engine.recreate); holds
                                        their environment (secrets): archive only
    volumes/<volume>/...                each volume's tree, with full metadata
    databases/<container>/<db>.<ext>    logical dumps
    config/<name>                       compose files and .env
    manifest.json                       last: every member with size, mode, owner,
                                        mtime and SHA-256; deleted paths (incremental)

backup.json comes first so a reader knows what to expect before the data;
manifest.json comes last because it holds checksums computed while writing.
"""

from __future__ import annotations

FORMAT_NAME = "docker-app-backup"
FORMAT_VERSION = 1

BACKUP_JSON = "backup.json"
CONTAINERS_JSON = "containers.json"
MANIFEST_JSON = "manifest.json"
VOLUMES_DIR = "volumes"
DATABASES_DIR = "databases"
CONFIG_DIR = "config"


def volume_member(volume: str, relpath: str) -> str:
    """Member name of RELPATH (relative to the volume root, "." for the root)."""
    return f"{VOLUMES_DIR}/{volume}" if relpath == "." else f"{VOLUMES_DIR}/{volume}/{relpath}"


def split_volume_member(name: str) -> tuple[str, str] | None:
    """(volume, relpath) of a volumes/ member, relpath "." for the volume root."""
    parts = name.split("/", 2)
    if len(parts) < 2 or parts[0] != VOLUMES_DIR or not parts[1]:
        return None
    return parts[1], parts[2] if len(parts) == 3 and parts[2] else "."


def archive_suffix(compression: str, encrypted: bool) -> str:
    """File suffix, e.g. ".tar.zst.age": tools pick the right decoder from it."""
    suffix = {"zstd": ".tar.zst", "gzip": ".tar.gz", "none": ".tar"}[compression]
    return suffix + (".age" if encrypted else "")
