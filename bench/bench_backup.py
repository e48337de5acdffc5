"""Backup and verify throughput and memory: ours vs the CLI pipelines, same data.

    .venv/bin/python bench/bench_backup.py [--gb 1.0] [--gb2 2.0] [--seed 1] [--skip-second]

Generates a deterministic (seeded) volume-like tree under /var/tmp: many small
text files, incompressible binaries, a few large semi-compressible files,
symlinks, odd modes and unicode names. Then, warm cache, in the same run:

  backup plain      engine.backup.create_backup (zstd -3, all cores)
                    vs `tar -c | zstd -T0 -3`
  backup encrypted  the same with age X25519 vs `tar -c | zstd -T0 -3 | age -r`
  quick verify      engine.verify.verify_backup (SHA-256 of the stored file)
  deep verify       verify_backup(deep=True) vs `zstd -d | tar -t`

Each of ours runs in a child process, whose own peak RSS (VmHWM) is
printed; the plain backup and deep verify run again on a second, larger
tree (--gb2): bounded memory means the peaks stay equal. Also printed: our
compressed size against `zstd -3` of exactly our tar.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CODE = REPO  # the checkout whose engine is measured (--code: compare with another one)
BACKUP_ID = "backup_20260101_000000_000000"
CHILD = """
import json, sys, time
from pathlib import Path
from engine.backup import BackupOptions, create_backup
from engine.inventory import AppInfo, VolumeInfo
from engine.verify import verify_backup
from storage.local import LocalStorage
mode, src, dest, spool, key = sys.argv[1:6]
secret = sys.argv[6] if len(sys.argv) > 6 else ""
storage = LocalStorage(Path(dest))
start = time.perf_counter()
if mode == "backup":
    volumes = tuple(VolumeInfo(name=p.name, mountpoint=str(p)) for p in sorted(Path(src).iterdir()))
    app = AppInfo("bench", (), volumes, (), ())
    options = BackupOptions(compression_level=3, recipients=(secret,) if secret else ())
    r = create_backup(client=None, app=app, backup_id=BACKUP_ID, storage=storage,
                      options=options, spool_dir=Path(spool))
    out = {"key": r.storage_key, "size": r.size_bytes, "sha256": r.sha256}
else:
    r = verify_backup(storage, key, sys.argv[7], deep=mode == "deep", encrypted=bool(secret),
                      identities=(secret,) if secret else ())
    assert r.valid, r.errors
    out = {}
out["seconds"] = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec (the parent's peak).
status = Path("/proc/self/status").read_text()
out["rss_kib"] = int(status.split("VmHWM:")[1].split()[0])
print(json.dumps(out))
""".replace("BACKUP_ID", repr(BACKUP_ID))

WORDS = (  # noqa: SIM905 - easier to read than a list
    "the quick brown fox jumps over lazy dog request handled status path user admin "
    "config value error warning info debug session token cache hit miss query select "
    "insert update delete from where order limit function return class import"
).split()
NAMES = ["données", "日本語", "résumé", "Ünïcödé", "emoji-🎉", "space name", "ñandú"]


def _text(rng: random.Random, size: int) -> bytes:
    words = [rng.choice(WORDS) for _ in range(size // 5 + 8)]
    lines = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    return "\n".join(lines).encode()[:size]


def _semi(rng: random.Random, size: int) -> bytes:
    """About 2:1 compressible: text blocks with random blocks between."""
    block = 64 * 1024
    text = _text(rng, block)
    parts = []
    for i in range(0, size, block):
        parts.append(rng.randbytes(block // 2) + text[i % 997 :][: block // 2])
    return b"".join(parts)[:size]


def make_tree(root: Path, total: int, seed: int) -> tuple[int, int]:
    """Two volumes; ~35% small text files (0.2-48 KiB), ~30% incompressible
    binaries (64 KiB-16 MiB), ~35% large semi-compressible files (48-128 MiB)."""
    rng = random.Random(seed)
    files_vol, data_vol = root / "bench_files", root / "bench_data"
    written = entries = 0
    small_end, binary_end = total * 0.35, total * 0.65
    index = 0
    while written < total:
        if written < small_end:
            d = files_vol / f"site{index // 2000}" / f"d{(index // 100) % 20}"
            if index % 100 == 0:
                d.mkdir(parents=True, exist_ok=True)
                entries += 1
            size = rng.randint(200, 48 * 1024)
            name = (
                f"{NAMES[index % len(NAMES)]}-{index}.txt" if index % 50 == 0 else f"f{index}.php"
            )
            path = d / name
            path.write_bytes(_text(rng, size))
            if index % 37 == 0:
                os.chmod(path, rng.choice([0o600, 0o640, 0o755, 0o4755, 0o2750, 0o400]))
            if index % 41 == 0:
                (d / f"link{index}").symlink_to(name)
                (d / f"dangling{index}").symlink_to("../../../nowhere/" + "x" * 120)
                entries += 2
        elif written < binary_end:
            d = data_vol / "bin"
            d.mkdir(parents=True, exist_ok=True)
            size = rng.randint(64 * 1024, 16 << 20)
            (d / f"blob{index}.bin").write_bytes(rng.randbytes(size))
        else:
            d = data_vol / "large"
            d.mkdir(parents=True, exist_ok=True)
            size = min(rng.randint(48 << 20, 128 << 20), max(total - written, 1 << 20))
            (d / f"table{index}.ibd").write_bytes(_semi(rng, size))
        written += size
        entries += 1
        index += 1
    os.chmod(files_vol, 0o1777)  # noqa: S103 - an odd mode, on purpose
    return written, entries


def _child(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *args], cwd=CODE, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _shell(command: str) -> float:
    start = time.perf_counter()
    subprocess.run(command, shell=True, check=True, executable="/bin/bash")  # noqa: S602
    return time.perf_counter() - start


def run_size(src: Path, work: Path, identity: str, recipient: str, mb: float) -> dict:
    """Ours (children) and the CLI, same data; returns the measures."""
    dest, spool = work / "store", work / "spool"
    shutil.rmtree(dest, ignore_errors=True)
    m: dict = {}
    base = work / "cli.tar.zst"
    _shell(f"tar -C {src} -c . | zstd -3 -T0 -q -f -o {base}")  # warm the page cache
    m["cli_plain"] = _shell(f"tar -C {src} -c . | zstd -3 -T0 -q -f -o {base}")
    m["cli_size"] = base.stat().st_size
    m["cli_enc"] = _shell(f"tar -C {src} -c . | zstd -3 -T0 -q | age -r {recipient} > {base}.age")
    m["cli_deep"] = _shell(f"zstd -d -q -c {base} | tar -t > /dev/null")
    keyfile = work / "key.txt"
    keyfile.write_text(identity + "\n")
    m["cli_deep_enc"] = _shell(f"age -d -i {keyfile} {base}.age | zstd -d -q | tar -t >/dev/null")
    plain = _child(["backup", str(src), str(dest), str(spool), ""])
    m["ours_plain"], m["ours_size"], m["rss_backup"] = (
        plain["seconds"],
        plain["size"],
        plain["rss_kib"],
    )
    ours_file = dest / plain["key"]
    recompress = f"zstd -d -q -c {ours_file} | zstd -3 -T0 -q -c | wc -c"
    out = subprocess.run(recompress, shell=True, check=True, capture_output=True, text=True)  # noqa: S602
    m["ours_tar_zstd3"] = int(out.stdout)
    enc = _child(["backup", str(src), str(dest), str(spool), "", recipient])
    m["ours_enc"], m["rss_backup_enc"] = enc["seconds"], enc["rss_kib"]
    quick = _child(["quick", str(src), str(dest), str(spool), plain["key"], "", plain["sha256"]])
    m["ours_quick"] = quick["seconds"]
    m["cli_quick"] = _shell(f"sha256sum {ours_file} > /dev/null")
    deep = _child(["deep", str(src), str(dest), str(spool), plain["key"], "", plain["sha256"]])
    m["ours_deep"], m["rss_deep"] = deep["seconds"], deep["rss_kib"]
    deep_enc = _child(
        ["deep", str(src), str(dest), str(spool), enc["key"], identity, enc["sha256"]]
    )
    m["ours_deep_enc"] = deep_enc["seconds"]
    m["mb"] = mb
    return m


def report(m: dict) -> None:
    mb = m["mb"]

    def line(label: str, ours: float, cli: float, cli_label: str, target: float) -> None:
        ratio = cli / ours
        flag = "ok" if ratio >= target else f"BELOW {target}"
        print(f"  {label:<17} ours {mb / ours:7.1f} MB/s ({ours:5.2f} s)  {cli_label:<26} "
              f"{mb / cli:7.1f} MB/s ({cli:5.2f} s)  ratio {ratio:.2f} [{flag}]")  # fmt: skip

    line("backup plain", m["ours_plain"], m["cli_plain"], "tar|zstd -T0 -3", 0.85)
    line("backup encrypted", m["ours_enc"], m["cli_enc"], "tar|zstd -T0 -3|age -r", 0.75)
    line("quick verify", m["ours_quick"], m["cli_quick"], "sha256sum", 0.0)
    line("deep verify", m["ours_deep"], m["cli_deep"], "zstd -d|tar -t", 0.8)
    line("deep verify enc", m["ours_deep_enc"], m["cli_deep_enc"], "age -d|zstd -d|tar -t", 0.0)
    size_ratio = m["ours_size"] / m["ours_tar_zstd3"]
    print(f"  compressed: ours {m['ours_size'] / 1e6:.1f} MB, zstd -3 of our tar "
          f"{m['ours_tar_zstd3'] / 1e6:.1f} MB (ratio {size_ratio:.3f}), "
          f"CLI tar|zstd {m['cli_size'] / 1e6:.1f} MB")  # fmt: skip
    print(
        f"  peak RSS: backup {m['rss_backup'] / 1024:.0f} MiB, encrypted "
        f"{m['rss_backup_enc'] / 1024:.0f} MiB, deep verify {m['rss_deep'] / 1024:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--gb2", type=float, default=2.0, help="second size, for flat memory")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-second", action="store_true")
    parser.add_argument("--code", type=Path, default=REPO, help="checkout to measure")
    args = parser.parse_args()
    global CODE
    CODE = args.code.resolve()
    sys.path.insert(0, str(REPO))
    from engine.age import generate_identity

    identity, recipient = generate_identity()
    results = []
    sizes = [args.gb] if args.skip_second else [args.gb, args.gb2]
    for gb in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-backup-", dir="/var/tmp") as tmp:
            work = Path(tmp)
            src = work / "src"
            start = time.perf_counter()
            total, entries = make_tree(src, int(gb * (1 << 30)), args.seed)
            subprocess.run(["sync"], check=True)
            print(f"data: {total / 1e6:.0f} MB in {entries} entries "
                  f"(generated in {time.perf_counter() - start:.0f} s)")  # fmt: skip
            m = run_size(src, work, identity, recipient, total / 1e6)
            report(m)
            results.append(m)
    if len(results) == 2:
        a, b = results[0]["rss_backup"], results[1]["rss_backup"]
        c, d = results[0]["rss_deep"], results[1]["rss_deep"]
        print(f"flat memory: backup {a / 1024:.0f} -> {b / 1024:.0f} MiB ({b / a:.2f}x), "
              f"deep verify {c / 1024:.0f} -> {d / 1024:.0f} MiB ({d / c:.2f}x) "
              f"for {results[0]['mb']:.0f} -> {results[1]['mb']:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
