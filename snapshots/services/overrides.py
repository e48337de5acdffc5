"""An app's database overrides (AppBackupPolicy.database_overrides) turned
into what discovery understands.

Stored per service, e.g.
    {"cache-db": {"skip": true},
     "db": {"engine": "mysql", "user": "wordpress", "password_env": "WP_DB_PASSWORD"}}
No secret is ever stored here: `password_env` names a variable of the
database container's own environment, read from Docker when the backup runs.
"""

from __future__ import annotations

from typing import Any

import docker

from engine.database_detection import DatabaseOverride
from engine.errors import EngineError
from engine.secret import Secret

# Every database the given user can see is dumped: there is no per-database
# filter yet (detection's own database list comes from the environment and
# must not limit what root dumps).
ALLOWED_KEYS = {"skip", "engine", "user", "password_env"}
ENGINES = {"mysql", "mariadb", "postgres", "mongo"}


class InvalidOverride(EngineError):
    pass


def _container_env(client: docker.DockerClient, app_id: str, service: str) -> dict[str, str]:
    labels = [f"com.docker.compose.project={app_id}", f"com.docker.compose.service={service}"]
    found = client.containers.list(all=True, filters={"label": labels})
    if not found:
        return {}
    pairs = (item.split("=", 1) for item in found[0].attrs["Config"].get("Env") or [])
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def database_overrides(
    raw: dict[str, Any], client: docker.DockerClient, app_id: str
) -> dict[str, DatabaseOverride]:
    overrides: dict[str, DatabaseOverride] = {}
    for service, spec in (raw or {}).items():
        if not isinstance(spec, dict) or set(spec) - ALLOWED_KEYS:
            raise InvalidOverride(
                f"database override for {service!r} must be an object with keys "
                f"{sorted(ALLOWED_KEYS)}"
            )
        engine = spec.get("engine")
        if engine is not None and engine not in ENGINES:
            raise InvalidOverride(f"database override for {service!r}: unknown engine {engine!r}")
        password = None
        if spec.get("password_env"):
            env = _container_env(client, app_id, service)
            if spec["password_env"] not in env:
                raise InvalidOverride(
                    f"database override for {service!r}: the container has no variable "
                    f"{spec['password_env']!r}"
                )
            password = Secret(env[spec["password_env"]])
        overrides[service] = DatabaseOverride(
            skip=bool(spec.get("skip", False)), engine=engine, user=spec.get("user"),
            password=password,
        )  # fmt: skip
    return overrides
