"""A second Docker engine beside the machine's, for the two-hosts test: its
own data root, exec root, socket and pidfile, no bridge and no iptables, the
test image loaded from the first engine (never pulled). Everything of it
lives under one temporary directory, removed afterwards."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker


@dataclass
class Engine:
    url: str  # unix://...
    client: docker.DockerClient


@contextmanager
def second_engine(first: docker.DockerClient, images: list[str]) -> Iterator[Engine]:
    if shutil.which("dockerd") is None:
        raise RuntimeError("dockerd missing: scripts/ensure_docker.sh installs docker.io")
    # Short paths: containerd's sockets under the exec root must fit a sun_path.
    root = Path(tempfile.mkdtemp(prefix="d2-", dir="/var/tmp"))
    socket = root / "docker.sock"
    log = (root / "dockerd.log").open("wb")
    process = subprocess.Popen(
        ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "x"),
         "-H", f"unix://{socket}", "--pidfile", str(root / "docker.pid"), "--bridge=none",
         "--iptables=false", "--ip6tables=false"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"unix://{socket}"
    client: docker.DockerClient | None = None
    try:
        deadline = time.monotonic() + 60
        while client is None:
            try:  # the client asks the engine its API version: once it answers
                client = docker.DockerClient(base_url=url, timeout=120)
            except docker.errors.DockerException:
                if process.poll() is not None or time.monotonic() > deadline:
                    text = (root / "dockerd.log").read_text()[-3000:]
                    raise AssertionError(f"second dockerd did not start:\n{text}") from None
                time.sleep(0.3)
        for image in images:
            # docker save | docker -H ... load, through the two APIs.
            client.images.load(b"".join(first.images.get(image).save(named=True)))
        yield Engine(url, client)
    finally:
        if client is not None:
            client.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
