"""S3 upload and download against `aws s3 cp` on the same server in the
same run, then peak RSS at a larger size, the seed floor (a 5 GB upload in
less than 10 minutes) and the bytes sent again after a `kill -9` at 50 %.

    .venv/bin/python bench/bench_s3.py [--server s3rver|moto] [--size-mb 1024]
        [--rounds 5] [--download-rounds 0] [--rss-size-mb 4096]
        [--seed-bytes 5000000000] [--kill-mb 1024]

s3rver is the default server: it serves ranged GETs from its files, so
downloads measure the clients (moto copies the whole object for each
ranged GET: a download figure against it measures moto). Each transfer runs
in its own process, so its peak RSS (wait4) is its own. The machine is
shared: each round alternates who goes first, every round is printed and
the ratio's median is the figure. Ratios are throughput ours / aws (>= 1:
we are as fast or faster); our upload runs with Content-MD5 per part (the
default) and with CRC32 per part (BACKUP_S3_CHECKSUMS=when_supported, the
checksum aws s3 cp sends). Needs s3rver or moto_server (scripts/
ensure_s3_servers.sh) and the aws CLI (Debian: awscli); awscli gets the
server's credentials through AWS_* environment variables, never arguments."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from storage.s3 import S3Storage  # noqa: E402
from storage.s3_config import MIB, S3Config  # noqa: E402
from tests.s3_servers import S3Server, moto_server, s3rver_server  # noqa: E402
from tests.storage.s3_helpers import random_file  # noqa: E402
from tests.tcp_fault_proxy import FaultProxy  # noqa: E402

# One child process for our side of a transfer: settings on stdin (they hold the secret).
CHILD = """
import json, sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from storage.s3 import S3Storage
from storage.s3_config import S3Config
from storage.s3_ledger import JsonFileLedger
s = json.load(sys.stdin)
storage = S3Storage(S3Config(**s["config"]))
if s["op"] == "upload":
    ledger = JsonFileLedger(Path(s["ledger"])) if s.get("ledger") else None
    storage.upload_file(Path(s["path"]), s["key"], ledger=ledger, sha256=s.get("sha256"))
else:
    # 1 MiB reads, as our consumers read the stream (engine.verify.STORED_CHUNK,
    # the restore's and the API download's chunks); aws writes 256 KiB pieces.
    with storage.open(s["key"]) as src, open(s["path"], "wb") as dst:
        while block := src.read(1024 * 1024):
            dst.write(block)
"""


def run_measured(
    command: list[str], stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[float, int, float]:
    """(wall seconds, peak RSS in MiB, CPU seconds) of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    assert child.stdin is not None and child.stderr is not None
    if stdin is not None:
        child.stdin.write(stdin)
    child.stdin.close()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {child.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss // 1024, usage.ru_utime + usage.ru_stime


class Bench:
    def __init__(self, server: S3Server, work: Path, part_mb: int, concurrency: int) -> None:
        self.server = server
        self.work = work
        self.bucket = server.new_bucket()
        self.config: dict[str, Any] = {
            "bucket": self.bucket,
            "endpoint_url": server.endpoint_url,
            "access_key": server.access_key,
            "secret_key": server.secret_key,
            "part_size": part_mb * MIB,
            "concurrency": concurrency,
            "read_timeout": 300.0,
        }
        self.storage = S3Storage(S3Config(**self.config))

    def ours(
        self, op: str, key: str, path: Path, config: dict[str, Any] | None = None, **extra: object
    ) -> tuple[float, int, float]:
        settings = {
            "op": op, "config": config or self.config, "key": key, "path": str(path), **extra,
        }  # fmt: skip
        return run_measured(
            [sys.executable, "-c", CHILD.format(repo=str(REPO))], json.dumps(settings).encode()
        )

    def aws(self, source: str, target: str) -> tuple[float, int, float]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID=self.server.access_key,
            AWS_SECRET_ACCESS_KEY=self.server.secret_key,
            AWS_DEFAULT_REGION="us-east-1",
        )
        aws_bin = shutil.which("aws")
        if aws_bin is None:
            raise SystemExit("the aws CLI is missing: apt-get install -y awscli")
        endpoint = self.server.endpoint_url
        command = [aws_bin, "--endpoint-url", endpoint, "s3", "cp", "--only-show-errors"]
        return run_measured([*command, source, target], env=env)

    def s3(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def delete(self, *keys: str) -> None:
        for key in keys:
            with contextlib.suppress(Exception):
                self.storage.client.delete_object(Bucket=self.bucket, Key=key)


@contextlib.contextmanager
def source_file(work: Path, size: int) -> Iterator[tuple[Path, str]]:
    path = work / f"source-{size}"
    digest = random_file(path, size)
    try:
        yield path, digest
    finally:
        path.unlink(missing_ok=True)


def mib_s(size: int, seconds: float) -> float:
    return size / MIB / seconds


UPLOADERS = ("ours", "ours-crc32", "aws")


def compare(bench: Bench, size: int, rounds: int) -> None:
    """ROUNDS rounds of upload then download, ours and aws's, the order
    rotating each round; every round printed, then the medians. Our upload
    runs twice: with Content-MD5 per part (the default, BACKUP_S3_CHECKSUMS=
    when_required) and with CRC32 per part (when_supported: what aws s3 cp
    sends by default)."""
    print(f"\n{size / MIB:.0f} MiB, {rounds} rounds (throughput ours / aws)", flush=True)
    ratios: dict[str, list[float]] = {"ours": [], "ours-crc32": [], "download": []}
    crc32 = {**bench.config, "request_checksum_calculation": "when_supported"}
    with source_file(bench.work, size) as (source, digest):
        for number in range(rounds):
            order = UPLOADERS[number % 3 :] + UPLOADERS[: number % 3]
            times: dict[str, tuple[float, int, float]] = {}
            for who in order:
                if who == "aws":
                    times["aws up"] = bench.aws(str(source), bench.s3("aws"))
                else:
                    config = crc32 if who == "ours-crc32" else bench.config
                    times[f"{who} up"] = bench.ours(
                        "upload", who, source, sha256=digest, config=config
                    )
                    bench.storage.verify(who, digest)
            for who in ("ours", "aws") if number % 2 == 0 else ("aws", "ours"):
                target = bench.work / f"down-{who}"
                if who == "ours":
                    times["ours down"] = bench.ours("download", "ours", target)
                else:
                    times["aws down"] = bench.aws(bench.s3("ours"), str(target))
                if target.stat().st_size != size:
                    raise SystemExit(f"{who}'s download has the wrong size")
                target.unlink()
            bench.delete(*UPLOADERS)
            aws_up = times["aws up"][0]
            for who in ("ours", "ours-crc32"):
                ratios[who].append(aws_up / times[f"{who} up"][0])
            ratios["download"].append(times["aws down"][0] / times["ours down"][0])
            print(
                f"  round {number + 1} (order {', '.join(order)}): upload MiB/s "
                f"ours {mib_s(size, times['ours up'][0]):.1f}, "
                f"ours-crc32 {mib_s(size, times['ours-crc32 up'][0]):.1f}, "
                f"aws {mib_s(size, aws_up):.1f} = {ratios['ours'][-1]:.2f} / "
                f"{ratios['ours-crc32'][-1]:.2f}; download MiB/s "
                f"{mib_s(size, times['ours down'][0]):.1f} / "
                f"{mib_s(size, times['aws down'][0]):.1f} = {ratios['download'][-1]:.2f}; "
                f"peak RSS up {times['ours up'][1]} / {times['ours-crc32 up'][1]} / "
                f"{times['aws up'][1]} MiB, down {times['ours down'][1]} / "
                f"{times['aws down'][1]} MiB; CPU s down {times['ours down'][2]:.1f} / "
                f"{times['aws down'][2]:.1f}; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    print(
        f"  median ratio: upload {statistics.median(ratios['ours']):.2f} (Content-MD5), "
        f"{statistics.median(ratios['ours-crc32']):.2f} (CRC32); "
        f"download {statistics.median(ratios['download']):.2f}",
        flush=True,
    )


def compare_downloads(bench: Bench, size: int, rounds: int) -> None:
    """Downloads only, ROUNDS rounds of ours and aws's of one object (who goes
    first alternating): more rounds of the noisier figure in the same time."""
    print(f"\n{size / MIB:.0f} MiB, downloads only, {rounds} rounds", flush=True)
    ratios: list[float] = []
    with source_file(bench.work, size) as (source, digest):
        bench.ours("upload", "down", source, sha256=digest)
    for number in range(rounds):
        times: dict[str, tuple[float, int, float]] = {}
        for who in ("ours", "aws") if number % 2 == 0 else ("aws", "ours"):
            target = bench.work / f"down-{who}"
            if who == "ours":
                times[who] = bench.ours("download", "down", target)
            else:
                times[who] = bench.aws(bench.s3("down"), str(target))
            if target.stat().st_size != size:
                raise SystemExit(f"{who}'s download has the wrong size")
            target.unlink()
        ratios.append(times["aws"][0] / times["ours"][0])
        print(
            f"  round {number + 1} ({'ours' if number % 2 == 0 else 'aws'} first): MiB/s "
            f"ours {mib_s(size, times['ours'][0]):.1f} / aws {mib_s(size, times['aws'][0]):.1f} "
            f"= {ratios[-1]:.2f}; CPU s {times['ours'][2]:.1f} / {times['aws'][2]:.1f}; "
            f"peak RSS {times['ours'][1]} / {times['aws'][1]} MiB; "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    bench.delete("down")
    print(f"  median download ratio {statistics.median(ratios):.2f}", flush=True)


def ours_only(bench: Bench, size: int, what: str, limit_seconds: float | None = None) -> None:
    """Our upload and download of SIZE bytes, time and peak RSS."""
    with source_file(bench.work, size) as (source, digest):
        up, up_rss, _ = bench.ours("upload", "ours", source, sha256=digest)
        bench.storage.verify("ours", digest)
        target = bench.work / "down-ours"
        down, down_rss, _ = bench.ours("download", "ours", target)
        target.unlink()
        bench.delete("ours")
    verdict = ""
    if limit_seconds is not None:
        verdict = f" ({'within' if up < limit_seconds else 'OVER'} {limit_seconds:.0f} s)"
    print(
        f"\n{what}: {size / 1e9:.2f} GB uploaded in {up:.1f} s ({mib_s(size, up):.1f} MiB/s)"
        f"{verdict}, peak RSS {up_rss} MiB; downloaded in {down:.1f} s "
        f"({mib_s(size, down):.1f} MiB/s), peak RSS {down_rss} MiB; "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def kill_at_half(bench: Bench, size: int) -> None:
    """kill -9 when half the parts are recorded, resume in a new process,
    count the part bytes the resume sent (through a relay that logs requests)."""
    ledger = bench.work / "ledger.json"
    ledger.unlink(missing_ok=True)
    with source_file(bench.work, size) as (source, digest), FaultProxy(bench.server.port) as proxy:
        relayed = {**bench.config, "endpoint_url": proxy.endpoint_url}
        settings = {
            "op": "upload", "config": relayed, "key": "resumed", "path": str(source),
            "ledger": str(ledger), "sha256": digest,
        }  # fmt: skip
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD.format(repo=str(REPO))],
            stdin=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert child.stdin is not None
        child.stdin.write(json.dumps(settings).encode())
        child.stdin.close()
        while child.poll() is None:
            if _recorded_bytes(ledger) >= size // 2:
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        child.wait()
        at_kill = _recorded_bytes(ledger)
        before = len(proxy.requests)
        elapsed, _, _ = bench.ours(
            "upload", "resumed", source, config=relayed, ledger=str(ledger), sha256=digest
        )
        sent = sum(
            int(r.headers.get("content-length", 0))
            for r in proxy.requests[before:]
            if r.method == "PUT" and "partNumber=" in r.target
        )
        bench.storage.verify("resumed", digest)
        bench.delete("resumed")
    missing = size - at_kill
    print(
        f"\nkill -9 at {at_kill / size:.0%} recorded ({size / MIB:.0f} MiB): the resume sent "
        f"{sent / MIB:.0f} MiB for {missing / MIB:.0f} MiB not in the ledger: "
        f"{max(sent - missing, 0) / MIB:.0f} MiB re-sent, "
        f"{max(missing - sent, 0) / MIB:.0f} MiB acknowledged but unrecorded at the kill kept "
        f"(ListParts + MD5, where the server has ListParts), {elapsed:.1f} s",
        flush=True,
    )


def _recorded_bytes(ledger: Path) -> int:
    try:
        data = json.loads(ledger.read_text())
    except (FileNotFoundError, ValueError):
        return 0
    return sum(p["size"] for parts in data.get("parts", {}).values() for p in parts.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", choices=("s3rver", "moto"), default="s3rver")
    parser.add_argument("--size-mb", type=int, action="append", help="default: 1024")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rss-size-mb", type=int, action="append", default=[])
    parser.add_argument(
        "--download-rounds", type=int, default=0, help="then downloads only, this many rounds"
    )
    parser.add_argument("--seed-bytes", type=int, default=0, help="e.g. 5000000000 (5 GB)")
    parser.add_argument("--kill-mb", type=int, default=0)
    parser.add_argument("--part-mb", type=int, default=8)
    # aws s3 cp's default max_concurrent_requests is 10: the same here, for a fair race.
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    serve = s3rver_server if args.server == "s3rver" else moto_server
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.server}, parts of "
        f"{args.part_mb} MiB, {args.concurrency} in flight, load {os.getloadavg()}",
        flush=True,
    )
    try:
        with serve() as server:
            bench = Bench(server, work, args.part_mb, args.concurrency)
            for size_mb in args.size_mb or [1024]:
                if args.rounds:
                    compare(bench, size_mb * MIB, args.rounds)
                if args.download_rounds:
                    compare_downloads(bench, size_mb * MIB, args.download_rounds)
            for size_mb in args.rss_size_mb:
                ours_only(bench, size_mb * MIB, f"{size_mb} MiB, ours only")
            if args.seed_bytes:
                ours_only(bench, args.seed_bytes, "seed floor", limit_seconds=600.0)
            if args.kill_mb:
                kill_at_half(bench, args.kill_mb * MIB)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
