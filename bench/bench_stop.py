"""How long stopping and starting an app takes: the old sequential stop (a
fixed 30 s timeout per container, one after another) against
engine.restore.lifecycle (dependents first, each rank at once, each
container with its own StopTimeout), on the same stack in the same run.

The stack (busybox, tests/images.py's local app image, nothing pulled):
db, and web and worker depending on it (Compose's depends_on label); worker
ignores SIGTERM and has stop_grace_period 2s, as an app whose PID 1 handles
no signal. Usage: .venv/bin/python bench/bench_stop.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.restore import lifecycle
from tests.images import APP_IMAGE
from tests.small_app import RUN_UNTIL_STOPPED
from tests.stacks import ComposeStack, ServiceSpec, random_project

OLD_FIXED_TIMEOUT = 30  # engine.quiesce.STOP_TIMEOUT_SECONDS, used for every container before
IGNORES_TERM = "trap '' TERM; while :; do sleep 1; done"


def _stack(client: docker.DockerClient, workdir: Path) -> ComposeStack:
    on_db = {"db": "service_started"}
    services = [
        ServiceSpec("db", APP_IMAGE, command=["sh", "-c", RUN_UNTIL_STOPPED]),
        ServiceSpec("web", APP_IMAGE, command=["sh", "-c", RUN_UNTIL_STOPPED], depends_on=on_db),
        ServiceSpec("worker", APP_IMAGE, command=["sh", "-c", IGNORES_TERM], depends_on=on_db,
                    stop_grace_period=2),
    ]  # fmt: skip
    project = random_project("benchstop")
    return ComposeStack(client, project, workdir / project, services)


def _old_stop(containers: list) -> None:
    for container in containers:  # as orchestrate._stop did: in the app's order, one by one
        container.reload()
        container.stop(timeout=OLD_FIXED_TIMEOUT)


def _new_stop(containers: list) -> None:
    lifecycle.stop_in_order(containers)


def _timed(action: Callable[[], object]) -> float:
    began = time.monotonic()
    action()
    return time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = docker.from_env(timeout=120)
    with tempfile.TemporaryDirectory() as workdir:
        stack = _stack(client, Path(workdir))
        stack.up()
        try:
            containers = [stack.container(s) for s in ("db", "web", "worker")]
            ids = [c.id for c in containers]
            figures: dict[str, list[float]] = {"old stop": [], "new stop": [], "new start": []}
            for _ in range(args.rounds):
                figures["old stop"].append(_timed(lambda: _old_stop(containers)))
                for container in containers:
                    container.start()
                figures["new stop"].append(_timed(lambda: _new_stop(containers)))
                started = _timed(
                    lambda: lifecycle.raise_for_failures(
                        lifecycle.start_in_order(containers, check=ids)
                    )
                )
                figures["new start"].append(started)
        finally:
            stack.remove()
    for name, values in figures.items():
        print(f"{name:10} median {statistics.median(values):6.1f} s  "
              f"runs {' '.join(f'{v:.1f}' for v in values)}")  # fmt: skip
    old, new = statistics.median(figures["old stop"]), statistics.median(figures["new stop"])
    print(f"stop: {old:.1f} s -> {new:.1f} s ({old / new:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
