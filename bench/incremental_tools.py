"""The incremental benchmark's moving parts: the Compose-labelled app holding
the data in real Docker named volumes, our backup and restore in child
processes (as a worker runs them), and the anchors: restic and
`tar --listed-incremental | zstd` on the same volume directories."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from restore_micro import drop_caches

APP_IMAGE = "localtest/app:1"  # built by scripts/testimages/build.sh; never pulled
VOLUMES = ("files", "db", "logs")  # Compose keys; volume names are <project>_<key>
# On everything created here, with the run's pid: its value names the project.
BENCH_LABEL = "backup-service.bench"
BENCH_PID_LABEL = "backup-service.bench.pid"
PROJECT_LABEL = "com.docker.compose.project"

CHILD = """
import json, resource, sys, time
from pathlib import Path
import django
django.setup()
from django.conf import settings
mode, app_id = sys.argv[1:3]
start = time.perf_counter()
if mode == "migrate":
    from django.core.management import call_command
    call_command("migrate", verbosity=0)
    out = {}
elif mode == "backup":
    from snapshots.services.backup import request_backup, run_backup
    run = request_backup(app_id, app_must_be_here=True, backup_type=sys.argv[3])
    snap = run_backup(str(run.pk))
    out = {"status": snap.status, "error": snap.error, "backup_id": snap.backup_id,
           "kind": snap.kind, "position": snap.chain_position, "size": snap.size_bytes,
           "bytes_written": snap.bytes_written, "bytes_full": snap.bytes_full,
           "path": str(Path(settings.BACKUP_ROOT) / snap.storage_key)}
else:
    from snapshots.services.restore import RestoreOptions, request_restore, run_restore
    run = request_restore(app_id, sys.argv[3], RestoreOptions(backup_before_restore=False))
    run = run_restore(str(run.pk))
    out = {"state": run.state, "error": run.error, "result": run.result}
out["seconds"] = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec (the parent's peak);
# the children's (any tool we ran) from RUSAGE_CHILDREN: the process tree's peak.
own = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
out["rss_kib"] = own
out["children_rss_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps(out))
"""


def child(env: dict[str, str], code: Path, *args: str) -> dict[str, Any]:
    """Run CHILD with ARGS on the checkout CODE, cold cache; adds the load."""
    subprocess.run(["sync"], check=True)
    drop_caches()
    load = os.getloadavg()[0]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], env=env | {"PYTHONPATH": str(code)}, cwd=code,
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    out = json.loads(lines[-1])
    out["load"] = load
    return out


def our_backup(env: dict[str, str], code: Path, app_id: str, kind: str) -> dict[str, Any]:
    out = child(env, code, "backup", app_id, kind)
    if out["status"] != "completed":
        raise SystemExit(f"{kind} backup failed: {out['error']}")
    return out


def our_restore(env: dict[str, str], code: Path, app_id: str, backup_id: str) -> dict[str, Any]:
    out = child(env, code, "restore", app_id, backup_id)
    if out["state"] != "completed":
        raise SystemExit(f"restore of {backup_id} failed: {out['error']}")
    out["seconds"] = out["result"].get("duration_seconds") or out["seconds"]
    return out


def timed(cmd: list[str] | str, **kwargs: Any) -> tuple[float, float]:
    """(wall seconds, load) of CMD, cold cache, writes flushed before."""
    subprocess.run(["sync"], check=True)
    drop_caches()
    load = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, **kwargs)
    return time.perf_counter() - started, load


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Restic:
    """A local restic repository; the password is in a 0600 file named by
    RESTIC_PASSWORD_FILE, never on a command line."""

    def __init__(self, work: Path) -> None:
        self.repo = work / "restic"
        shutil.rmtree(self.repo, ignore_errors=True)
        password = work / "restic-password"
        password.write_text(secrets.token_hex(16))
        password.chmod(0o600)
        self.env = os.environ | {
            "RESTIC_REPOSITORY": str(self.repo), "RESTIC_PASSWORD_FILE": str(password),
            "RESTIC_CACHE_DIR": str(work / "restic-cache"),
        }  # fmt: skip
        self._run(["restic", "init", "--repository-version", "2"])

    def _run(self, cmd: list[str]) -> None:
        subprocess.run(cmd, check=True, env=self.env, stdout=subprocess.DEVNULL)

    def backup(self, roots: list[Path]) -> dict[str, float]:
        """One `restic backup` of ROOTS (the second finds the first as its
        parent: same host and paths); its time and the bytes it added."""
        before = tree_bytes(self.repo)
        seconds, load = timed(
            ["restic", "backup", "--host", "bench", "--compression", "auto", *map(str, roots)],
            env=self.env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return {"seconds": seconds, "size": tree_bytes(self.repo) - before, "load": load}


class Tar:
    """GNU tar's --listed-incremental, piped to zstd at our level."""

    def __init__(self, work: Path, level: int) -> None:
        self.dir = work / "tar"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir()
        self.level = level
        self.count = 0

    def backup(self, roots: list[Path]) -> dict[str, float]:
        """Level 0 the first time, then level 1, 2... (the snapshot file is
        updated by each run)."""
        out = self.dir / f"level{self.count}.tar.zst"
        self.count += 1
        # Volumes are <base>/<name>/_data: named from their common base, so
        # each keeps its own member names.
        base = roots[0].parent.parent
        parts = " ".join(f"'{root.relative_to(base)}'" for root in roots)
        pipe = (
            f"tar --listed-incremental='{self.dir / 'snar'}' -C '{base}' -c {parts} "
            f"| zstd -q -T0 -{self.level} -o '{out}'"
        )
        seconds, load = timed(["bash", "-o", "pipefail", "-c", pipe])
        return {"seconds": seconds, "size": out.stat().st_size, "load": load}


@contextlib.contextmanager
def docker_app(project: str) -> Iterator[dict[str, Path]]:
    """A Compose-labelled app PROJECT: three named volumes and a running app
    container mounting them. Yields {volume key: mountpoint}; removes it all
    afterwards (and first, anything an interrupted run left)."""
    import docker

    client = docker.from_env()
    remove_leftovers(client, project)
    labels = {PROJECT_LABEL: project, "com.docker.compose.version": "2.24.0",
              BENCH_LABEL: project, BENCH_PID_LABEL: str(os.getpid())}  # fmt: skip
    try:
        client.images.get(APP_IMAGE)  # raises ImageNotFound: never pull
        volumes = {
            key: client.volumes.create(
                f"{project}_{key}", labels=labels | {"com.docker.compose.volume": key}
            )
            for key in VOLUMES
        }
        service = {
            "com.docker.compose.service": "app",
            "com.docker.compose.container-number": "1",
            "com.docker.compose.oneoff": "False",
        }
        mounts = {v.name: {"bind": f"/srv/{key}", "mode": "rw"} for key, v in volumes.items()}
        client.containers.run(
            # A shell that exits on SIGTERM: `sleep` as PID 1 ignores it, and
            # Docker's 10 s stop timeout would be most of a small restore.
            APP_IMAGE, ["sh", "-c", "trap 'exit 0' TERM; sleep 86400 & wait"],
            name=f"{project}-app-1", labels=labels | service, volumes=mounts, detach=True,
            # No network: nothing to serve, and the restore's start then needs
            # no endpoint (a busy shared engine once failed to create one).
            network_mode="none",
        )  # fmt: skip
        yield {key: Path(v.attrs["Mountpoint"]) for key, v in volumes.items()}
    finally:
        remove_leftovers(client, project)
        client.close()


def mountpoints(project: str) -> dict[str, Path]:
    """The volumes' mountpoints now (a restore may have swapped volumes)."""
    import docker

    client = docker.from_env()
    try:
        return {
            key: Path(client.volumes.get(f"{project}_{key}").attrs["Mountpoint"]) for key in VOLUMES
        }
    finally:
        client.close()


def _leftover(labels: dict[str, str], project: str) -> bool:
    """PROJECT's, or an earlier run's whose process is gone. Never another
    live run's: the suite's smoke test runs this bench while a developer
    may run it too (removing all bench-labelled volumes once deleted a
    running bench's files mid-backup)."""
    if labels.get(BENCH_LABEL) == project:
        return True
    pid = labels.get(BENCH_PID_LABEL, "")
    if not pid.isdigit():
        return True  # made before runs carried their pid
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_leftovers(client: Any, project: str) -> None:
    """PROJECT's container and volumes (by name too, in case a restore's swap
    left them without our label), and what dead earlier runs left."""
    import docker.errors

    for key in VOLUMES:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(f"{project}-app-1").remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            client.volumes.get(f"{project}_{key}").remove(force=True)

    for container in client.containers.list(all=True, filters={"label": BENCH_LABEL}):
        if _leftover(container.labels, project):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
    for volume in client.volumes.list(filters={"label": BENCH_LABEL}):
        if _leftover(volume.attrs.get("Labels") or {}, project):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                volume.remove(force=True)
