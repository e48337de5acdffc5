"""Restore of a realistic app through the service, against tar and restic.

    .venv/bin/python bench/bench_restore.py [--size-gb 2.2] [--small-files 56000]
        [--dump-rows 200000] [--dir /var/tmp/bench_restore] [--no-restic]
        [--code DIR] [--repeat N] [--py-spy PATH [--profile-out FILE]]
    .venv/bin/python bench/bench_restore.py --micro [--size-gb 1.5] [--rounds 3]

Needs root (volume mountpoints, drop_caches), Docker with the test images
(scripts/testimages/) and DATABASE_URL (PostgreSQL; migrated here). Builds the
WordPress-like stack of tests/stacks.py: a files volume of --size-gb with
--small-files small files owned by www-data, MariaDB with --dump-rows rows (a
~530-byte row each: 200,000 make a ~106 MB dump), backs it up with the
service (snapshots.services.backup, zstd), then times, in this order and each
after `sync; echo 3 > /proc/sys/vm/drop_caches`:

  tar      `zstd -dc archive | tar -x --numeric-owner -p` of the whole archive
  mariadb  `mariadb < dump` of the archive's dump, in the same container
  restic   `restic restore` of the same files volume (backed up into a local
           repo first, untimed)
  ours     the restore as the CLI runs it (request_restore + run_restore, no
           safety backup) in a child process: its duration_seconds,
           downtime_seconds and phases from the run's result, and the child's
           peak RSS (VmHWM)

--code DIR also times DIR's restore (another checkout, e.g. `git worktree
add DIR main`) of the same archive just before ours: before/after in one run.
--repeat N restores N times (with --code, alternating who goes first);
every restore starts once the disk has finished discarding what the previous
one deleted (restore_micro.settle_discards). --py-spy PATH records our first
restore's threads with py-spy (raw collapsed stacks
in --profile-out).

--micro keeps the old extract-only comparison (engine.restore.extract_volumes
vs `zstd -dc | tar -x`, no Docker): see restore_micro.py.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from restore_app import MB, App, realistic_app
from restore_micro import drop_caches, micro_main

REPO = Path(__file__).resolve().parent.parent
CHILD = """
import json, sys, time
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
    run = request_backup(app_id, app_must_be_here=True)
    snap = run_backup(str(run.pk))
    out = {"status": snap.status, "error": snap.error, "backup_id": snap.backup_id,
           "path": str(Path(settings.BACKUP_ROOT) / snap.storage_key), "size": snap.size_bytes}
else:
    from snapshots.services.restore import RestoreOptions, request_restore, run_restore
    run = request_restore(app_id, sys.argv[3], RestoreOptions(backup_before_restore=False))
    run = run_restore(str(run.pk))
    out = {"state": run.state, "error": run.error, "result": run.result}
out["seconds"] = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec (the parent's peak).
out["rss_kib"] = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
print(json.dumps(out))
"""


def child(
    env: dict[str, str], *args: str, wrap: list[str] | None = None, code: Path = REPO
) -> dict[str, Any]:
    """Run CHILD with ARGS on the checkout CODE; WRAP: a profiler's command
    line before it (py-spy's own lines come after ours on stdout)."""
    done = subprocess.run(
        [*(wrap or []), sys.executable, "-c", CHILD, *args], env=env | {"PYTHONPATH": str(code)},
        cwd=code, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def timed(cmd: list[str], **kwargs: Any) -> float:
    """Wall seconds of CMD, cold cache, its writes flushed before and after
    (the flush after is not timed: tar's and restic's writeback happens later,
    as ours does; the swap's sync is part of ours)."""
    subprocess.run(["sync"], check=True)
    drop_caches()
    started = time.perf_counter()
    subprocess.run(cmd, check=True, **kwargs)
    took = time.perf_counter() - started
    subprocess.run(["sync"], check=True)
    return took


def anchors(app: App, archive: Path, work: Path, restic: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    dest = work / "anchor-tar"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    pipe = f"zstd -dc '{archive}' | tar -x --numeric-owner -p -C '{dest}'"
    out["tar"] = timed(["bash", "-o", "pipefail", "-c", pipe])
    dumps = sorted((dest / "databases").rglob("*.sql"))
    out["dump_bytes"] = sum(dump.stat().st_size for dump in dumps)
    for dump in dumps:  # the dump drops and recreates its database, as ours does
        with open(dump, "rb") as feed:
            out["mariadb"] = out.get("mariadb", 0.0) + timed(
                ["docker", "exec", "-i", "-e", "MYSQL_PWD", app.db_container, "mariadb",
                 "--user=root", "--default-character-set=utf8mb4", "--max-allowed-packet=1G"],
                stdin=feed, env=os.environ | app.root_password_env,
            )  # fmt: skip
    shutil.rmtree(dest)
    if restic and shutil.which("restic"):
        env = os.environ | {
            "RESTIC_PASSWORD": secrets.token_hex(16),
            "RESTIC_REPOSITORY": str(work / "restic"),
        }
        shutil.rmtree(work / "restic", ignore_errors=True)
        quiet = {"env": env, "stdout": subprocess.DEVNULL}
        subprocess.run(["restic", "init"], check=True, **quiet)  # type: ignore[arg-type]
        subprocess.run(["restic", "backup", "."], check=True, cwd=app.files_root, **quiet)  # type: ignore[arg-type]
        dest = work / "anchor-restic"
        shutil.rmtree(dest, ignore_errors=True)
        out["restic"] = timed(["restic", "restore", "latest", "--target", str(dest)], **quiet)
        shutil.rmtree(dest)
        shutil.rmtree(work / "restic")
    return out


def full_main(args: argparse.Namespace) -> None:
    if "DATABASE_URL" not in os.environ:
        raise SystemExit("set DATABASE_URL (PostgreSQL) for the service's rows")
    work: Path = args.dir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "backup_project.settings",
        "BACKUP_ROOT": str(work / "backups"), "BACKUP_SPOOL_DIR": str(work / "spool"),
        "BACKUP_DATA_DIR": str(work / "data"), "PYTHONPATH": str(REPO),
    }  # fmt: skip
    child(env, "migrate", "-")
    load = os.getloadavg()
    started = time.perf_counter()
    with realistic_app(work, int(args.size_gb * 1e9), args.small_files, args.dump_rows) as app:
        print(f"app {app.project}: {app.files} files, {app.bytes / MB:.0f} MB in its files "
              f"volume, {args.dump_rows} rows ({time.perf_counter() - started:.0f} s)")  # fmt: skip
        backup = child(env, "backup", app.project)
        if backup["status"] != "completed":
            raise SystemExit(f"backup failed: {backup['error']}")
        archive = Path(backup["path"])
        print(f"backup {backup['backup_id']}: {backup['size'] / MB:.0f} MB "
              f"({backup['seconds']:.0f} s)")  # fmt: skip
        times = anchors(app, archive, work, not args.no_restic)
        wrap = None
        if args.py_spy:  # every thread's stacks, collapsed (flamegraph.pl's input)
            wrap = [args.py_spy, "record", "--threads", "--idle", "--nonblocking", "--rate", "100",
                    "--format", "raw", "--output", str(args.profile_out), "--"]  # fmt: skip
        for round_no in range(args.repeat):
            # With --code, the other checkout first, then ours, then the other
            # way round (the machine's state drifts), on the same archive.
            order = ["code", "ours"] if args.code is not None else ["ours"]
            for who in order if round_no % 2 == 0 else order[::-1]:
                if who == "code":
                    other = restore(env, app, backup, args.code.resolve())
                    print(f"round {round_no + 1} --code {args.code}: {summary(other, times)}")
                    continue
                ours = restore(env, app, backup, REPO, wrap if round_no == 0 else None)
                print(f"round {round_no + 1} this checkout: {summary(ours, times)}")
        report(app, backup, times, ours, load)


def restore(
    env: dict[str, str], app: App, backup: dict[str, Any], code: Path,
    wrap: list[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Our restore of BACKUP with the checkout CODE, cold cache."""
    subprocess.run(["sync"], check=True)
    drop_caches()
    load = os.getloadavg()[0]
    ours = child(env, "restore", app.project, backup["backup_id"], wrap=wrap, code=code)
    if ours["state"] != "completed":
        raise SystemExit(f"restore failed: {ours['error']}")
    ours["load"] = load
    return ours


def summary(ours: dict[str, Any], times: dict[str, float]) -> str:
    result = ours["result"]
    total = result.get("duration_seconds") or ours["seconds"]
    phases = result.get("phases") or {}
    volume = phases.get("validate_and_stage", 0.0) + phases.get("extract", 0.0)
    return (
        f"total {total:.1f} s ({total / times['tar']:.2f}x tar), volume part {volume:.1f} s "
        f"({volume / times['tar']:.2f}x), downtime {result.get('downtime_seconds')} s "
        f"(databases {phases.get('databases', 0.0):.1f} s), "
        f"peak RSS {ours['rss_kib'] / 1024:.0f} MiB (load {ours['load']:.1f}); phases "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in phases.items())
    )


def report(
    app: App, backup: dict[str, Any], times: dict[str, float], ours: dict[str, Any],
    load: tuple[float, ...],
) -> None:  # fmt: skip
    result = ours["result"]
    total = result.get("duration_seconds") or ours["seconds"]
    phases: dict[str, float] = result.get("phases") or {}
    downtime = result.get("downtime_seconds")
    tar = times["tar"]
    volume_part = (
        phases.get("validate_and_stage", 0.0)
        + phases.get("validate", 0.0)
        + phases.get("extract", 0.0)
    )
    db_part = phases.get("databases")
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in load)} (2 cores, shared)")
    print(f"dump: {times.get('dump_bytes', 0) / MB:.0f} MB; archive {backup['size'] / MB:.0f} MB")
    print(f"anchors: zstd -dc | tar -x {tar:.1f} s; mariadb < dump {times.get('mariadb', 0):.1f} s;"
          f" restic restore {times.get('restic', float('nan')):.1f} s"
          f" ({times.get('restic', float('nan')) / tar:.2f}x tar)")  # fmt: skip
    print(f"ours: total {total:.1f} s = {total / tar:.2f}x tar (target <= 1.5x); "
          f"downtime {downtime if downtime is not None else 'n/a'} s; peak RSS "
          f"{ours['rss_kib'] / 1024:.0f} MiB (target <= 200)")  # fmt: skip
    print(f"phases: {json.dumps(phases)}")
    if volume_part:
        print(f"volume part (read, check, stage): {volume_part:.1f} s = "
              f"{volume_part / tar:.2f}x tar of the whole archive")  # fmt: skip
    if db_part is not None and times.get("mariadb"):
        print(f"database part: {db_part:.1f} s = {db_part / times['mariadb']:.2f}x mariadb < dump")
        if downtime is not None:
            print(f"downtime - database restore = {downtime - db_part:.1f} s (target <= 3 s)")
    # The volume part grows with the data; the rest (stop, database, start,
    # check) is this app's and stays.
    scale = 10e9 / app.bytes
    ten = total + volume_part * (scale - 1) if volume_part else total * scale
    other = total - sum(phases.values())
    print(f"outside the phases (locking, planning, rows): {other:.1f} s")
    print(f"10 GB extrapolated (the volume part x {scale:.1f}, the rest as measured): {ten:.0f} s "
          f"({ten / 60:.1f} min; seed floor < 10 min)")  # fmt: skip
    print("json: " + json.dumps({
        "files": app.files, "bytes": app.bytes, "archive": backup["size"], "times": times,
        "total": total, "downtime": downtime, "phases": phases, "rss_kib": ours["rss_kib"],
        "load": load, "ten_gb_s": ten, "warnings": result.get("warnings"),
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micro", action="store_true", help="extract only (restore_micro.py)")
    parser.add_argument("--size-gb", type=float, default=2.2)
    parser.add_argument("--small-files", type=int, default=56_000)
    parser.add_argument("--dump-rows", type=int, default=200_000)
    parser.add_argument("--no-restic", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="--micro only")
    parser.add_argument("--cold", action="store_true", help="--micro: drop caches before each")
    parser.add_argument("--keep", action="store_true", help="--micro: keep the tree and archive")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/bench_restore"))
    parser.add_argument("--repeat", type=int, default=1, help="restore rounds (same archive)")
    parser.add_argument("--code", type=Path, help="also time this checkout's restore (before)")
    parser.add_argument("--py-spy", help="profile our restore with this py-spy binary")
    parser.add_argument("--profile-out", type=Path, default=Path("/tmp/restore-profile.txt"))
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    (micro_main if args.micro else full_main)(args)


if __name__ == "__main__":
    main()
