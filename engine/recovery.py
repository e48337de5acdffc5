"""The engine's side of recovering a run whose worker died: put containers
back as they were and finish or undo volume swaps, each step tried whatever
the others did, every outcome said.

The caller (snapshots.recovery) reads the dead run's journal to know which
containers and volumes it touched, and holds the app's lease meanwhile."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import docker

from engine.errors import describe
from engine.quiesce import STOP_TIMEOUT_SECONDS
from engine.restore.volume_swap import discard_stage, recover_volume

logger = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    """What recovery did and what it could not do (for the run's result)."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    left_for_operator: list[str] = field(default_factory=list)
    # Something was left because it is in use (a volume under a running
    # container outside the run): recovery tries again on its next round.
    retry: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "done": self.done,
            "failed": self.failed,
            "left_for_operator": self.left_for_operator,
            "retry": self.retry,
        }


def bring_back(
    client: docker.DockerClient,
    ids: Iterable[str],
    report: RecoveryReport,
    paused: Iterable[str] = (),
) -> None:
    """Unpause the paused and start the stopped among IDS (containers that
    were running before the dead run touched them, or PAUSED: paused, which
    a restore stopped and which are paused again once they run)."""
    repause = set(paused)
    for container_id in dict.fromkeys(ids):
        try:
            container = client.containers.get(container_id)
            if container.status == "paused":
                container.unpause()
                report.done.append(f"unpaused {container.name}")
            elif container.status != "running":
                container.start()
                report.done.append(f"started {container.name}")
            if container_id in repause:
                container.pause()
                report.done.append(f"paused {container.name} again")
        except docker.errors.NotFound:
            report.failed.append(f"container {container_id[:12]} no longer exists")
        except Exception as exc:  # Docker unreachable, slow, refusing: say it, go on
            report.failed.append(f"could not bring back {container_id[:12]}: {describe(exc)}")


def stop_running(client: docker.DockerClient, ids: Iterable[str], report: RecoveryReport) -> bool:
    """Stop those of IDS that run (a volume is never swapped under a running
    container). False if one could not be stopped."""
    ok = True
    for container_id in dict.fromkeys(ids):
        try:
            container = client.containers.get(container_id)
            if container.status in ("running", "paused", "restarting"):
                if container.status == "paused":
                    container.unpause()
                container.stop(timeout=STOP_TIMEOUT_SECONDS)
                report.done.append(f"stopped {container.name}")
        except docker.errors.NotFound:
            continue
        except Exception as exc:
            ok = False
            report.failed.append(f"could not stop {container_id[:12]}: {describe(exc)}")
    return ok


def running_users(client: docker.DockerClient, volume: str, known: Iterable[str]) -> list[str]:
    """Names of running containers, other than KNOWN ids, that mount VOLUME."""
    known_ids = set(known)
    users = client.containers.list(filters={"volume": volume, "status": "running"})
    users += client.containers.list(filters={"volume": volume, "status": "paused"})
    return [c.name for c in users if c.id not in known_ids]


def settle_volume(volume_dir: Path, keep_restored: bool) -> str:
    """Finish (KEEP_RESTORED) or undo a dead restore's swap of one volume."""
    if not volume_dir.is_dir():
        return "gone"
    return recover_volume(volume_dir, keep_restored=keep_restored)


def discard_stages(stages: dict[str, str], report: RecoveryReport) -> None:
    """Delete the staging dirs (volume -> path) a dead restore made while
    the app ran: never swapped in, nothing uses them."""
    for volume, path in stages.items():
        stage = Path(path)
        try:
            if stage.exists():
                discard_stage(stage)
                report.done.append(f"volume {volume}: removed its staging dir")
        except Exception as exc:
            report.failed.append(f"staging dir of volume {volume}: {describe(exc)}")


def volume_dirs(client: docker.DockerClient) -> list[Path]:
    """This host's volume directories (each holding `_data`)."""
    dirs = []
    for volume in client.volumes.list():
        mountpoint = (volume.attrs or {}).get("Mountpoint")
        if mountpoint:
            dirs.append(Path(mountpoint).parent)
    return dirs
