"""The Docker Engine API as the engine uses it: a client that is known to
answer, and reading a small file inside a container (a `*_FILE` secret)."""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import docker
import docker.errors
import requests

from engine.errors import DockerUnavailable, EngineError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def connect(base_url: str | None = None, timeout: int = 120) -> docker.DockerClient:
    """A client for BASE_URL (default: DOCKER_HOST or the local socket) that
    has answered a ping, so a missing engine fails here with one clear
    message instead of deep inside a backup."""
    where = _without_userinfo(base_url or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET)
    client: docker.DockerClient | None = None
    try:
        if base_url is None:
            client = docker.from_env(timeout=timeout)
        else:
            client = docker.DockerClient(base_url=base_url, timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        if client is not None:
            client.close()
        raise DockerUnavailable(
            f"no Docker engine answers at {where}: {type(exc).__name__}. Is dockerd running, "
            "and may this user use its socket?"
        ) from exc
    return client


def container_file_reader(client: docker.DockerClient, container_id: str) -> Callable[[str], str]:
    """A database_detection.FileReader that runs `cat` in the running container, as the image's
    own entrypoint reads `*_FILE` variables (Docker secrets are bind mounts
    under /run/secrets, readable by root)."""

    def read(path: str) -> str:
        try:
            container = client.containers.get(container_id)
            result = container.exec_run(["cat", "--", path], user="0", demux=True)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineError(
                f"cannot read {path} in container {container_id[:12]}: {type(exc).__name__}"
            ) from exc
        out, _err = result.output
        # The output may be a password: only the exit code goes into the message.
        if result.exit_code != 0:
            raise EngineError(
                f"cannot read {path} in container {container_id[:12]}: "
                f"cat exited {result.exit_code}"
            )
        # Like the entrypoints' "$(< file)": trailing newlines are not part of the value.
        return (out or b"").decode("utf-8", errors="replace").rstrip("\n")

    return read


def _without_userinfo(url: str) -> str:
    """URL without a user:password part, so it can go into a message."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))
