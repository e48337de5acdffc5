"""Restore throughput: engine.restore.extract_volumes vs `zstd -dc | tar -x`.

Builds a volume-like tree (many small files, some large random and some
large compressible files), archives it with ArchiveWriter + zstd, then in the
same run extracts it both ways into fresh dirs on the same disk, alternating,
and prints MB/s of each (volume file bytes / wall time), the ratio (target
>= 0.8) and the extrapolation to the seed floor (10 GB in < 10 minutes).

    .venv/bin/python bench/bench_restore.py [--size-gb 1.5] [--rounds 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.archive.manifest import Manifest
from engine.archive.writer import ArchiveWriter
from engine.compression import open_compressor, open_decompressor
from engine.restore.extract import extract_volumes

MB = 1_000_000
VOLUME = "bench_data"
# Random bytes mapped onto a small alphabet: text-like, compresses about 2:1.
_TEXT = bytes((b"etaoinshrdlcumwfgypbvkjxqz   \n,.<>=/;{}ETAOINSHR0123456789" * 5)[:256])


def _content(rng: random.Random, size: int, compressible: bool) -> bytes:
    data = rng.randbytes(size)
    return data.translate(_TEXT) if compressible else data


def make_volume(root: Path, total_bytes: int, seed: int = 7) -> tuple[int, int]:
    """A tree of about TOTAL_BYTES: a quarter in ~16 KB files (sizes 512 B to
    64 KB, 100 per dir, WordPress-like), the rest in 32-192 MB files, half
    random (media), half compressible (logs, dumps). (files, bytes)."""
    rng = random.Random(seed)
    files = written = 0
    small_budget = total_bytes // 4
    while written < small_budget:
        folder = root / "wp-content" / f"d{files // 100:04d}"
        if files % 100 == 0:
            folder.mkdir(parents=True)
        size = int(2 ** rng.uniform(9, 16))
        (folder / f"f{files:06d}.php").write_bytes(_content(rng, size, rng.random() < 0.7))
        files += 1
        written += size
    big = root / "big"
    big.mkdir()
    index = 0
    while written < total_bytes:
        size = min(rng.randint(32, 192) * MB, max(total_bytes - written, MB))
        with open(big / f"blob{index:02d}.bin", "wb") as handle:
            for done in range(0, size, 8 * MB):
                handle.write(_content(rng, min(8 * MB, size - done), index % 2 == 1))
        index += 1
        files += 1
        written += size
    return files, written


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


def settle() -> None:
    """Flush the previous run's writes and deletions before timing the next."""
    subprocess.run(["sync"], check=True)
    time.sleep(3)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/bench_restore"))
    parser.add_argument("--keep", action="store_true", help="keep the tree and archive")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    work: Path = args.dir
    source, archive = work / "source", work / "archive.tar.zst"
    if not archive.exists():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        started = time.perf_counter()
        files, size = make_volume(source, int(args.size_gb * 1e9))
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
            settle()
            wall, cpu = runs[name](archive, dest)
            walls[name].append(wall)
            cpus[name].append(cpu)
            print(f"round {round_no + 1} {name:4}: {wall:6.2f} s  {size / MB / wall:7.1f} MB/s"
                  f"  (CPU {cpu:5.2f} s)")  # fmt: skip
            shutil.rmtree(dest, ignore_errors=True)
    report(size, walls, cpus)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
