"""S3 upload and download against `aws s3 cp`, on the same moto server in
the same run: wall time, throughput, ratio and peak RSS of each side, then
the bytes sent again when an upload is killed (-9) at 50 % and resumed.

    .venv/bin/python bench/bench_s3.py [--size-mb 1024] [--size-mb 4096] [--part-mb 8]

Each transfer runs in its own process, so its peak RSS (wait4) is its own.
Needs moto_server (requirements-dev.txt) and the aws CLI (Debian: awscli).
moto keeps objects in memory: the server's RSS grows with what it holds,
each size's objects are deleted before the next size."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from storage.s3 import S3Storage  # noqa: E402
from storage.s3_config import MIB, S3Config  # noqa: E402
from tests.s3_servers import S3Server, moto_server  # noqa: E402
from tests.storage.s3_helpers import random_file  # noqa: E402
from tests.tcp_fault_proxy import FaultProxy  # noqa: E402

# One child process for our side of a transfer: settings on stdin (they hold the secret).
CHILD = """
import json, sys, hashlib
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
    with storage.open(s["key"]) as src, open(s["path"], "wb") as dst:
        while block := src.read(8 * 1024 * 1024):
            dst.write(block)
"""


def run_measured(
    command: list[str], stdin: bytes | None = None, env: dict[str, str] | None = None
) -> tuple[float, int]:
    """(wall seconds, peak RSS in MiB) of one child process."""
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
    return elapsed, usage.ru_maxrss // 1024


def ours(op: str, config: dict, key: str, path: Path, **extra: object) -> tuple[float, int]:
    settings = {"op": op, "config": config, "key": key, "path": str(path), **extra}
    return run_measured(
        [sys.executable, "-c", CHILD.format(repo=str(REPO))], json.dumps(settings).encode()
    )


def aws(server: S3Server, *args: str) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=server.access_key,
        AWS_SECRET_ACCESS_KEY=server.secret_key,
        AWS_DEFAULT_REGION="us-east-1",
    )
    aws_bin = shutil.which("aws")
    if aws_bin is None:
        raise SystemExit("the aws CLI is missing: apt-get install -y awscli")
    return run_measured(
        [aws_bin, "--endpoint-url", server.endpoint_url, "s3", "cp", "--only-show-errors", *args],
        env=env,
    )


def line(what: str, size: int, seconds: float, rss: int) -> str:
    return (
        f"  {what:<22} {seconds:7.1f} s  {size / MIB / seconds:7.1f} MiB/s  peak RSS {rss:5d} MiB"
    )


def bench_size(
    server: S3Server,
    work: Path,
    size_mb: int,
    part_mb: int,
    concurrency: int,
    aws_download_max_mb: int,
) -> None:
    size = size_mb * MIB
    source = work / f"source-{size_mb}"
    print(f"\n{size_mb} MiB file (parts of {part_mb} MiB, {concurrency} in flight)", flush=True)
    digest = random_file(source, size)
    bucket = server.new_bucket()
    config = {
        "bucket": bucket,
        "endpoint_url": server.endpoint_url,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "part_size": part_mb * MIB,
        "concurrency": concurrency,
        "read_timeout": 300.0,
    }
    up, up_rss = ours("upload", config, "ours", source, sha256=digest)
    print(line("upload (ours)", size, up, up_rss), flush=True)
    aws_up, aws_up_rss = aws(server, str(source), f"s3://{bucket}/aws")
    print(line("upload (aws s3 cp)", size, aws_up, aws_up_rss))
    print(f"  upload ratio ours/aws: {up / aws_up:.2f} (time; < 1 is faster)", flush=True)
    down, down_rss = ours("download", config, "ours", work / "down-ours")
    storage = S3Storage(S3Config(**config))
    storage.verify("ours", digest)  # metadata; the download is compared by size
    if (work / "down-ours").stat().st_size != size:
        raise SystemExit("our download has the wrong size")
    print(line("download (ours)", size, down, down_rss), flush=True)
    if size_mb <= aws_download_max_mb:
        aws_down, aws_down_rss = aws(server, f"s3://{bucket}/aws", str(work / "down-aws"))
        print(line("download (aws s3 cp)", size, aws_down, aws_down_rss))
        print(f"  download ratio ours/aws: {down / aws_down:.2f}", flush=True)
    else:
        # moto copies the whole object for every ranged GET, and aws s3 cp
        # downloads in 8 MiB ranges: hours for 4 GiB, a measure of moto only.
        print(
            f"  download (aws s3 cp)   skipped above {aws_download_max_mb} MiB (moto ranged GETs)"
        )
        (work / "down-aws").touch()
    for leftover in ("down-ours", "down-aws"):
        (work / leftover).unlink()
    # moto holds objects in memory: free them before the next upload.
    for key in ("ours", "aws"):
        storage.client.delete_object(Bucket=bucket, Key=key)
    kill_at_half(server, config, source, digest, work, size)
    storage.client.delete_object(Bucket=bucket, Key="resumed")
    source.unlink()


def kill_at_half(
    server: S3Server, config: dict, source: Path, digest: str, work: Path, size: int
) -> None:
    """kill -9 when half the parts are recorded, resume in a new process,
    count the part bytes the resume sent (through a relay that logs requests)."""
    ledger = work / "ledger.json"
    ledger.unlink(missing_ok=True)
    with FaultProxy(server.port) as proxy:
        relayed = {**config, "endpoint_url": proxy.endpoint_url}
        settings = {
            "op": "upload",
            "config": relayed,
            "key": "resumed",
            "path": str(source),
            "ledger": str(ledger),
            "sha256": digest,
        }
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD.format(repo=str(REPO))],
            stdin=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert child.stdin is not None
        child.stdin.write(json.dumps(settings).encode())
        child.stdin.close()
        while child.poll() is None:
            recorded = _recorded_bytes(ledger)
            if recorded >= size // 2:
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        child.wait()
        at_kill = _recorded_bytes(ledger)
        before = len(proxy.requests)
        elapsed, _ = ours("upload", relayed, "resumed", source, ledger=str(ledger), sha256=digest)
        sent = sum(
            int(r.headers.get("content-length", 0))
            for r in proxy.requests[before:]
            if r.method == "PUT" and "partNumber=" in r.target
        )
    missing = size - at_kill
    print(
        f"  kill -9 at {at_kill / size:.0%} recorded: the resume sent {sent / MIB:.0f} MiB "
        f"for {missing / MIB:.0f} MiB not in the ledger: {max(sent - missing, 0) / MIB:.0f} MiB "
        f"re-sent, {max(missing - sent, 0) / MIB:.0f} MiB acknowledged but unrecorded at the "
        f"kill kept (ListParts + MD5), {elapsed:.1f} s",
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
    parser.add_argument("--size-mb", type=int, action="append", help="default: 1024")
    parser.add_argument("--part-mb", type=int, default=8)
    # aws s3 cp's default max_concurrent_requests is 10: the same here, for a fair race.
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--aws-download-max-mb", type=int, default=1024)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    try:
        with moto_server() as server:
            for size_mb in args.size_mb or [1024]:
                bench_size(
                    server, work, size_mb, args.part_mb, args.concurrency, args.aws_download_max_mb
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
