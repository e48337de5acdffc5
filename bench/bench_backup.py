"""Backup and verify throughput and memory: ours vs the CLI pipelines, same data.

    .venv/bin/python bench/bench_backup.py [--gb 1] [--gb2 4] [--rounds 3] [--seed 1]
                                           [--skip-second] [--floor-gb 0 [--floor-only]]
                                           [--code DIR]

The data (bench/dataset.py) is loaded into the two named Docker volumes of a
Compose-labelled app; ours finds them by label as a worker does. Then, warm
cache, alternating ours and the CLI for --rounds rounds:

  backup plain      engine.backup.create_backup (zstd -3, all cores)
                    vs `tar -c | zstd -T0 -3`
  backup encrypted  the same with age X25519 vs `tar -c | zstd -T0 -3 | age -r`
  quick verify      engine.verify.verify_backup (SHA-256 of the stored file)
                    vs `sha256sum`
  deep verify       verify_backup(deep=True) vs `zstd -d | tar -t`
                    (encrypted: vs `age -d | zstd -d | tar -t`)

Ratios are CLI time / our time per round (>= 1: we are faster); the median
is compared with the target. Each of ours runs in a child process whose own
peak RSS (VmHWM) is printed. The plain backup and deep verify run again on a
second, larger dataset (--gb2) for flat memory, and --floor-gb N times one
backup and verify of N GB against the seed's floors.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset import APP_ID, docker_app

REPO = Path(__file__).resolve().parent.parent
CODE = REPO  # the checkout whose engine is measured (--code: compare with another one)
BACKUP_ID = "backup_20260101_000000_000000"
CHILD = """
import json, sys, time
from pathlib import Path
from engine.backup import BackupOptions, create_backup
from engine.discovery import get_app
from engine.docker_client import connect
from engine.verify import verify_backup
from storage.local import LocalStorage
mode, dest, spool, key, secret, sha256 = sys.argv[1:7]
storage = LocalStorage(Path(dest))
start = time.perf_counter()
if mode.startswith("backup"):
    client = connect()
    app = get_app(client, APP_ID)
    options = BackupOptions(compression="gzip" if mode == "backup-gzip" else "zstd",
                            compression_level=None if mode == "backup-gzip" else 3,
                            recipients=(secret,) if secret else ())
    r = create_backup(client=client, app=app, backup_id=BACKUP_ID, storage=storage,
                      options=options, spool_dir=Path(spool))
    out = {"key": r.storage_key, "size": r.size_bytes, "sha256": r.sha256}
else:
    r = verify_backup(storage, key, sha256, deep=mode == "deep", encrypted=bool(secret),
                      identities=(secret,) if secret else ())
    assert r.valid, r.errors
    out = {}
out["seconds"] = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec (the parent's peak).
status = Path("/proc/self/status").read_text()
out["rss_kib"] = int(status.split("VmHWM:")[1].split()[0])
print(json.dumps(out))
""".replace("BACKUP_ID", repr(BACKUP_ID)).replace("APP_ID", repr(APP_ID))


def _child(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *args], cwd=CODE, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _shell(command: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, shell=True, check=True, executable="/bin/bash")  # noqa: S602
    return time.perf_counter() - start


class Measures:
    """Per measurement: our times, the CLI's times, our peak RSS."""

    def __init__(self, mb: float) -> None:
        self.mb = mb
        self.ours: dict[str, list[float]] = {}
        self.cli: dict[str, list[float]] = {}
        self.rss: dict[str, int] = {}
        self.sizes: dict[str, int] = {}

    def pair(self, name: str, ours: Callable[[], dict], cli: Callable[[], float]) -> dict:
        """One round: the CLI, then ours (their order alternates with the round)."""
        first_cli = len(self.ours.get(name, [])) % 2 == 0
        if first_cli:
            self.cli.setdefault(name, []).append(cli())
        result = ours()
        self.ours.setdefault(name, []).append(result["seconds"])
        self.rss[name] = max(self.rss.get(name, 0), result["rss_kib"])
        if not first_cli:
            self.cli.setdefault(name, []).append(cli())
        return result

    def ratio(self, name: str) -> float:
        return statistics.median(
            c / o for c, o in zip(self.cli[name], self.ours[name], strict=True)
        )


def run_size(
    roots: list[Path], work: Path, identity: str, recipient: str, mb: float, rounds: int
) -> Measures:
    dest, spool = work / "store", work / "spool"
    volumes = " ".join(f"{r.parent.name}/_data" for r in roots)
    tar = f"tar -C {roots[0].parent.parent} -c {volumes}"
    base = work / "cli.tar.zst"
    keyfile = work / "key.txt"
    keyfile.write_text(identity + "\n")
    m = Measures(mb)
    _shell(f"{tar} | zstd -3 -T0 -q -f -o {base}")  # warm the page cache
    plain = enc = {}
    for _ in range(rounds):
        plain = m.pair(
            "backup plain",
            lambda: _child("backup", str(dest), str(spool), "", "", ""),
            lambda: _shell(f"{tar} | zstd -3 -T0 -q -f -o {base}"),
        )
        enc = m.pair(
            "backup encrypted",
            lambda: _child("backup", str(dest), str(spool), "", recipient, ""),
            lambda: _shell(f"{tar} | zstd -3 -T0 -q | age -r {recipient} > {base}.age"),
        )
    # gzip when asked for: ISA-L at its default level vs pigz -6 on all cores (once: slow).
    gz = m.pair(
        "backup gzip",
        lambda: _child("backup-gzip", str(dest), str(spool), "", "", ""),
        lambda: _shell(f"{tar} | pigz -6 > {work / 'cli.tar.gz'}"),
    )
    ours_file = dest / plain["key"]
    for _ in range(rounds):
        m.pair(
            "quick verify",
            lambda: _child("quick", str(dest), "", plain["key"], "", plain["sha256"]),
            lambda: _shell(f"sha256sum {ours_file} > /dev/null"),
        )
        m.pair(
            "deep verify",
            lambda: _child("deep", str(dest), "", plain["key"], "", plain["sha256"]),
            lambda: _shell(f"zstd -d -q -c {base} | tar -t > /dev/null"),
        )
        m.pair(
            "deep verify enc",
            lambda: _child("deep", str(dest), "", enc["key"], identity, enc["sha256"]),
            lambda: _shell(f"age -d -i {keyfile} {base}.age | zstd -d -q | tar -t >/dev/null"),
        )
    m.sizes["ours"] = plain["size"]
    m.sizes["cli"] = base.stat().st_size
    m.sizes["ours_gzip"], m.sizes["cli_gzip"] = gz["size"], (work / "cli.tar.gz").stat().st_size
    recompress = f"zstd -d -q -c {ours_file} | zstd -3 -T0 -q -c | wc -c"
    out = subprocess.run(recompress, shell=True, check=True, capture_output=True, text=True)  # noqa: S602
    m.sizes["ours_tar_zstd3"] = int(out.stdout)
    return m


TARGETS = {"backup plain": 0.85, "backup encrypted": 0.75, "deep verify": 0.8}
CLI_LABELS = {
    "backup plain": "tar|zstd -T0 -3",
    "backup encrypted": "tar|zstd -T0 -3|age -r",
    "backup gzip": "tar|pigz -6",
    "quick verify": "sha256sum",
    "deep verify": "zstd -d|tar -t",
    "deep verify enc": "age -d|zstd -d|tar -t",
}


def report(m: Measures) -> None:
    for name, label in CLI_LABELS.items():
        ours, cli = min(m.ours[name]), min(m.cli[name])
        target = TARGETS.get(name)
        ratio = m.ratio(name)
        flag = "" if target is None else ("ok" if ratio >= target else f"BELOW {target}")
        print(
            f"  {name:<17} ours {m.mb / ours:7.1f} MB/s ({ours:5.2f} s)  {label:<22} "
            f"{m.mb / cli:7.1f} MB/s ({cli:5.2f} s)  median ratio {ratio:.2f} {flag}"
        )
    ratios = ", ".join(
        f"{c / o:.2f}" for c, o in zip(m.cli["backup plain"], m.ours["backup plain"], strict=True)
    )
    print(f"  backup plain ratios per round: {ratios}")
    size_ratio = m.sizes["ours"] / m.sizes["ours_tar_zstd3"]
    print(
        f"  compressed: ours {m.sizes['ours'] / 1e6:.1f} MB, zstd -3 of our tar "
        f"{m.sizes['ours_tar_zstd3'] / 1e6:.1f} MB (ratio {size_ratio:.3f}, target <= 1.03), "
        f"CLI tar|zstd {m.sizes['cli'] / 1e6:.1f} MB"
    )
    print(
        f"  gzip: ours {m.sizes['ours_gzip'] / 1e6:.1f} MB, "
        f"pigz -6 {m.sizes['cli_gzip'] / 1e6:.1f} MB"
    )
    print("  peak RSS: " + ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in m.rss.items()))


def floor(gb: float, seed: int) -> None:
    """The seed's floors on one big dataset: backup < 5 min, archive < 1.5x
    the data, verify < 1 min."""
    with (
        docker_app(int(gb * (1 << 30)), seed) as (_, total, entries),
        tempfile.TemporaryDirectory(prefix="bench-floor-", dir="/var/tmp") as tmp,
    ):
        subprocess.run(["sync"], check=True)
        dest, spool = Path(tmp) / "store", Path(tmp) / "spool"
        print(f"floor: {total / 1e9:.1f} GB in {entries} entries")
        b = _child("backup", str(dest), str(spool), "", "", "")
        q = _child("quick", str(dest), "", b["key"], "", b["sha256"])
        d = _child("deep", str(dest), "", b["key"], "", b["sha256"])
        print(
            f"  backup {b['seconds']:.1f} s (floor 300 s; {total / 1e6 / b['seconds']:.0f} MB/s), "
            f"archive {b['size'] / total:.2f}x the data (floor < 1.5x)"
        )
        print(f"  quick verify {q['seconds']:.1f} s, deep verify {d['seconds']:.1f} s (floor 60 s)")
        print(
            f"  peak RSS: backup {b['rss_kib'] / 1024:.0f} MiB, deep verify "
            f"{d['rss_kib'] / 1024:.0f} MiB"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--gb2", type=float, default=4.0, help="second size, for flat memory")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-second", action="store_true")
    parser.add_argument("--floor-gb", type=float, default=0.0, help="also time N GB once")
    parser.add_argument("--floor-only", action="store_true", help="only the --floor-gb run")
    parser.add_argument("--code", type=Path, default=REPO, help="checkout to measure")
    args = parser.parse_args()
    global CODE
    CODE = args.code.resolve()
    from engine.age import generate_identity

    identity, recipient = generate_identity()
    results = []
    sizes = [args.gb] if args.skip_second else [args.gb, args.gb2]
    if args.floor_only:
        sizes = []
    for i, gb in enumerate(sizes):
        start = time.perf_counter()
        with (
            docker_app(int(gb * (1 << 30)), args.seed) as (roots, total, entries),
            tempfile.TemporaryDirectory(prefix="bench-backup-", dir="/var/tmp") as tmp,
        ):
            subprocess.run(["sync"], check=True)
            print(
                f"data: {total / 1e6:.0f} MB in {entries} entries in Docker volumes "
                f"(generated in {time.perf_counter() - start:.0f} s)"
            )
            m = run_size(
                roots, Path(tmp), identity, recipient, total / 1e6, args.rounds if i == 0 else 1
            )
            report(m)
            results.append(m)
    if len(results) == 2:
        a, b = results
        for name in ("backup plain", "deep verify"):
            print(
                f"flat memory, {name}: {a.rss[name] / 1024:.0f} -> {b.rss[name] / 1024:.0f} MiB "
                f"({b.rss[name] / a.rss[name]:.2f}x) for {a.mb:.0f} -> {b.mb:.0f} MB"
            )
    if args.floor_gb:
        floor(args.floor_gb, args.seed)


if __name__ == "__main__":
    main()
