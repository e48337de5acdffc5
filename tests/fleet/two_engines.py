"""A second Docker engine beside the machine's, for the two-hosts test: its
own data root, exec root, socket and pidfile, its own bridge and no
iptables, the test image loaded from the first engine (never pulled).
Everything of it lives under one temporary directory (and one bridge),
removed afterwards.

Not --bridge=none: a dockerd started with it deletes the host's docker0
(moby removes the default bridge interface when the bridge is disabled),
and every later container of the first engine on its default network then
fails with "could not find bridge docker0"."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    bridge = f"d2br{os.getpid() % 100_000}"  # an interface name: at most 15 characters
    subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)  # a leftover
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", "10.213.7.1/24", "dev", bridge], check=True)
    process = subprocess.Popen(
        ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "x"),
         "-H", f"unix://{socket}", "--pidfile", str(root / "docker.pid"), f"--bridge={bridge}",
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
        subprocess.run(["ip", "link", "del", bridge], check=False)


def wait_for(what: str, check: Callable[[], Any], seconds: float = 60) -> Any:
    """CHECK's first truthy value, polled every 0.3 s; fails the test after SECONDS."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not in {seconds} s"
        time.sleep(0.3)
