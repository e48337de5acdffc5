"""Backup throughput and memory: our pipeline vs `tar | zstd` on the same data.

    .venv/bin/python bench/bench_backup.py [--gb 1.0]

Builds a volume-like tree (many small files, some large compressible and
random ones), then in the same run times
  (a) engine.backup.create_backup (tar → zstd -3, all cores → SHA-256 →
      atomic local write + sidecar), in a child process so its peak RSS is
      its own, and
  (b) `tar -c DIR | zstd -3 -T0 > FILE` (the baseline),
and prints MB/s of both, the ratio, and the peak RSS for the full data size
and for a third of it: bounded memory means the two peaks are about equal.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHILD = """
import sys, time
from pathlib import Path
from engine.backup import BackupOptions, create_backup
from engine.inventory import AppInfo, VolumeInfo
from storage.local import LocalStorage
src, dest, spool = map(Path, sys.argv[1:4])
volumes = tuple(VolumeInfo(name=p.name, mountpoint=str(p)) for p in sorted(src.iterdir()))
app = AppInfo("bench", (), volumes, (), ())
start = time.perf_counter()
result = create_backup(client=None, app=app, backup_id="backup_20260101_000000_000000",
    storage=LocalStorage(dest), options=BackupOptions(compression_level=3),
    spool_dir=spool)
print(time.perf_counter() - start, result.size_bytes)
"""


def make_tree(root: Path, total_bytes: int) -> int:
    """~40% in 4-64 KiB files, ~30% large text-like, ~30% large random."""
    written = 0
    small_budget, text_budget = total_bytes * 0.4, total_bytes * 0.7
    for vol in ("bench_files", "bench_data"):
        (root / vol).mkdir(parents=True)
    index = 0
    line = b"2026-01-05 10:30:00 INFO request handled path=/wp-admin/ status=200 ms=12\n"
    while written < total_bytes:
        if written < small_budget:
            d = root / "bench_files" / f"d{index // 500}"
            d.mkdir(exist_ok=True)
            size = 4096 + (index * 7919) % 61440
            (d / f"f{index}.php").write_bytes(os.urandom(size // 4) * 4)
        elif written < text_budget:
            size = 64 << 20
            (root / "bench_data" / f"log{index}.txt").write_bytes(line * (size // len(line)))
        else:
            size = 64 << 20
            (root / "bench_data" / f"blob{index}.bin").write_bytes(os.urandom(size))
        written += size
        index += 1
    return written


def ours(src: Path, work: Path) -> tuple[float, int, int]:
    dest, spool = work / "ours", work / "spool"
    shutil.rmtree(dest, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(dest), str(spool)],
        cwd=REPO, check=True, capture_output=True, text=True,
    )  # fmt: skip
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    seconds, size = out.stdout.split()
    return float(seconds), int(size), max(peak_kib, before)


def baseline(src: Path, work: Path) -> tuple[float, int]:
    target = work / "baseline.tar.zst"
    start = time.perf_counter()
    command = f"tar -C {src} -c . | zstd -3 -T0 -q -o {target} -f"
    subprocess.run(command, shell=True, check=True)  # noqa: S602 - fixed command, our paths
    return time.perf_counter() - start, target.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backup-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        src = work / "src"
        total = make_tree(src, int(args.gb * (1 << 30)))
        subprocess.run(["sync"], check=True)
        mb = total / 1e6
        # Warm the page cache equally for both: the first read pays the disk.
        baseline(src, work)
        base_s, base_size = baseline(src, work)
        ours_s, ours_size, peak_full = ours(src, work)
        print(f"data: {mb:.0f} MB in {sum(1 for _ in src.rglob('*'))} entries")
        for label, seconds, size in (
            ("baseline tar|zstd -3 -T0", base_s, base_size),
            ("ours create_backup      ", ours_s, ours_size),
        ):
            print(f"{label}: {mb / seconds:7.1f} MB/s ({seconds:.2f} s, {size / 1e6:.0f} MB)")
        print(f"ratio ours/baseline: {base_s / ours_s:.2f}")
        third = work / "third"
        third.mkdir()
        make_tree(third, total // 3)
        _, _, peak_third = ours(third, work)
        print(f"peak RSS: {peak_full / 1024:.0f} MiB for {mb:.0f} MB; "
              f"{peak_third / 1024:.0f} MiB for a third of it")  # fmt: skip


if __name__ == "__main__":
    main()
