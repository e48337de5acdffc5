"""The extract-only micro-benchmark (bench_restore.py --micro):
engine.restore.extract_volumes against `zstd -dc | tar -x` on a volume-like
tree, no Docker, no database. Extracts into fresh dirs on the same disk,
alternating who goes first, and prints MB/s of each (volume file bytes / wall
time), the ratio and the extrapolation to the seed floor (10 GB in < 10 min)."""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from restore_app import MB, make_tree

from engine.archive.manifest import Manifest
from engine.archive.writer import ArchiveWriter
from engine.compression import open_compressor, open_decompressor
from engine.restore.extract import extract_volumes

VOLUME = "bench_data"


def write_archive(root: Path, archive: Path) -> None:
    with open(archive, "wb") as out:
        compressor = open_compressor(out, "zstd", threads=-1)
        writer = ArchiveWriter(compressor, Manifest(backup_id="backup_bench"))
        writer.add_backup_json({"app_id": "bench", "volumes": [{"name": VOLUME, "labels": {}}]})
        writer.add_volume(VOLUME, root)
        writer.close()
        compressor.close()


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_ours(archive: Path, dest: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all our threads)."""
    dest.mkdir()
    cpu, started = _cpu(resource.RUSAGE_SELF), time.perf_counter()
    with open(archive, "rb") as raw:
        extract_volumes(open_decompressor(raw, "zstd"), {VOLUME: dest})  # type: ignore[arg-type]
    return time.perf_counter() - started, _cpu(resource.RUSAGE_SELF) - cpu


def run_tar(archive: Path, dest: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of zstd and tar)."""
    dest.mkdir()
    cpu, started = _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(
        ["bash", "-o", "pipefail", "-c",
         f"zstd -dc '{archive}' | tar -x --numeric-owner -p -C '{dest}'"],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - started, _cpu(resource.RUSAGE_CHILDREN) - cpu


def settle(cold: bool) -> None:
    """Flush the previous run's writes and deletions before timing the next;
    COLD: drop the page cache too (root only)."""
    subprocess.run(["sync"], check=True)
    if cold:
        drop_caches()
    time.sleep(3)


def drop_caches() -> bool:
    """`sync; echo 3 > /proc/sys/vm/drop_caches`, once the disk has finished
    discarding what earlier runs deleted (settle_discards); False where not
    permitted."""
    subprocess.run(["sync"], check=True)
    settle_discards()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def settle_discards(path: Path = Path("/var/tmp"), rate: int = 500, limit: float = 120) -> float:
    """Wait until PATH's disk completes fewer than RATE discards a second
    (over 2 s; at most LIMIT s); the seconds waited. On a filesystem mounted
    with `discard` (this machine's ext4), deleting a 2 GB tree issues
    ~100,000 discards that run on after rm returns and slow whatever writes
    next: the anchors' and the previous restore's deletions would be charged
    to the next run. Other helpers' deletions make 0-500 a second here."""
    dev = os.stat(path).st_dev
    stat = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")
    if not stat.exists():
        return 0.0

    def discards() -> int:
        fields = stat.read_text().split()
        return int(fields[11]) if len(fields) > 11 else 0

    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = discards()
        time.sleep(2)
        if discards() - before < 2 * rate:
            break
    return time.monotonic() - started


def report(size: int, walls: dict[str, list[float]], cpus: dict[str, list[float]]) -> None:
    ratios = sorted(t / o for o, t in zip(walls["ours"], walls["tar"], strict=True))
    ours, tar = (size / MB / min(walls[name]) for name in ("ours", "tar"))
    cpu_ours, cpu_tar = (statistics.median(cpus[name]) for name in ("ours", "tar"))
    print(f"volume data: {size / MB:.0f} MB")
    print(f"best: ours {ours:.1f} MB/s, zstd -dc | tar -x {tar:.1f} MB/s, ratio {ours / tar:.2f}")
    print(f"per-round ratios: {', '.join(f'{r:.2f}' for r in ratios)} "
          f"(median {statistics.median(ratios):.2f}; target >= 0.8)")  # fmt: skip
    print(f"CPU seconds (median): ours {cpu_ours:.2f} (incl. SHA-256 of every file), "
          f"zstd+tar {cpu_tar:.2f}; ratio {cpu_tar / cpu_ours:.2f}")  # fmt: skip
    ten_gb = 10_000 / ours
    slowest = 10_000 / (size / MB / max(walls["ours"]))
    print(f"10 GB at our best rate: {ten_gb:.0f} s ({ten_gb / 60:.1f} min), at our slowest: "
          f"{slowest / 60:.1f} min (seed floor: < 10 min)")  # fmt: skip


def micro_main(args: argparse.Namespace) -> None:
    work: Path = args.dir
    source, archive = work / "source", work / "archive.tar.zst"
    if not archive.exists():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        started = time.perf_counter()
        files, size = make_tree(source, int(args.size_gb * 1e9), args.small_files)
        print(f"tree: {files} files, {size / MB:.0f} MB ({time.perf_counter() - started:.0f} s)")
        started = time.perf_counter()
        write_archive(source, archive)
        print(f"archive: {archive.stat().st_size / MB:.0f} MB zstd "
              f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    size = sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    runs = {"ours": run_ours, "tar": run_tar}
    walls: dict[str, list[float]] = {"ours": [], "tar": []}
    cpus: dict[str, list[float]] = {"ours": [], "tar": []}
    for round_no in range(args.rounds):
        # Alternate who goes first: the disk is shared, its state drifts.
        for name in ("ours", "tar") if round_no % 2 == 0 else ("tar", "ours"):
            dest = work / f"out-{name}"
            shutil.rmtree(dest, ignore_errors=True)
            settle(args.cold)
            wall, cpu = runs[name](archive, dest)
            walls[name].append(wall)
            cpus[name].append(cpu)
            print(f"round {round_no + 1} {name:4}: {wall:6.2f} s  {size / MB / wall:7.1f} MB/s"
                  f"  (CPU {cpu:5.2f} s)")  # fmt: skip
            shutil.rmtree(dest, ignore_errors=True)
    report(size, walls, cpus)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
