"""How big a block delta is, and what hashing costs, per block size and
digest, on a real InnoDB tablespace after random row updates (each one
rewrites a 16 KiB page in place). The figures behind
engine.incremental.delta's BLOCK_SIZE and digest; run by hand:

    .venv/bin/python scripts/measure_delta_blocks.py [rows] [updates]

Starts a labelled MariaDB container (the local test image), fills a table,
copies its .ibd file, updates UPDATES random rows, makes InnoDB write its
pages back (a clean shutdown), copies the file again, and compares.
"""

from __future__ import annotations

import hashlib
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

IMAGE = "localtest/mariadb:10.11"
LABEL = "docker-app-backup.measure=delta-blocks"
SIZES = (4096, 8192, 16384, 65536)
DIGESTS = {
    "blake2b-8": lambda b: hashlib.blake2b(b, digest_size=8).digest(),
    "blake2b-16": lambda b: hashlib.blake2b(b, digest_size=16).digest(),
    "sha256": lambda b: hashlib.sha256(b).digest(),
    "md5": lambda b: hashlib.md5(b).digest(),  # noqa: S324 - speed reference only
}


def sh(*args: str, input: str | None = None) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, input=input).stdout


def sql(name: str, password: str, statement: str) -> str:
    return sh("docker", "exec", "-i", "-e", f"MYSQL_PWD={password}", name, "mariadb", "-uroot",
              "-N", "test", input=statement)  # fmt: skip


def wait_ready(name: str, password: str) -> None:
    for _ in range(120):
        try:
            sql(name, password, "SELECT 1")
            return
        except subprocess.CalledProcessError:
            time.sleep(1)
    raise SystemExit("MariaDB did not start")


def blocks(data: bytes, size: int, digest: Callable[[memoryview], bytes]) -> list[bytes]:
    view = memoryview(data)
    return [digest(view[i : i + size]) for i in range(0, len(data), size)]


def main(rows: int, updates: int) -> None:
    name = f"measure-delta-{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    sh("docker", "run", "-d", "--name", name, "--label", LABEL, "-e",
       f"MYSQL_ROOT_PASSWORD={password}", "-e", "MYSQL_DATABASE=test", IMAGE)  # fmt: skip
    try:
        wait_ready(name, password)
        sql(name, password, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(200)) ENGINE=InnoDB")
        batch = 5000
        for start in range(0, rows, batch):
            values = ",".join(
                f"({i}, REPEAT(MD5({i}), 6))" for i in range(start, min(rows, start + batch))
            )
            sql(name, password, f"INSERT INTO t VALUES {values}")  # noqa: S608 - our ints
        with tempfile.TemporaryDirectory() as work:
            before, after = Path(work) / "before.ibd", Path(work) / "after.ibd"
            sh("docker", "stop", "-t", "60", name)  # a clean shutdown writes every page
            sh("docker", "cp", f"{name}:/var/lib/mysql/test/t.ibd", str(before))
            sh("docker", "start", name)
            wait_ready(name, password)
            ids = [secrets.randbelow(rows) for _ in range(updates)]
            statements = "".join(f"UPDATE t SET v = MD5(RAND()) WHERE id = {i};" for i in ids)  # noqa: S608
            sql(name, password, statements)
            sh("docker", "stop", "-t", "60", name)
            sh("docker", "cp", f"{name}:/var/lib/mysql/test/t.ibd", str(after))
            old, new = before.read_bytes(), after.read_bytes()
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    mib = len(new) / 2**20
    print(f"t.ibd: {len(old)} -> {len(new)} bytes ({mib:.1f} MiB), {updates} row updates")
    print("block   changed  delta bytes  % of file   records")
    for size in SIZES:
        a, b = blocks(old, size, DIGESTS["blake2b-16"]), blocks(new, size, DIGESTS["blake2b-16"])
        changed = sum(1 for i, d in enumerate(b) if i >= len(a) or a[i] != d)
        delta = 104 + changed * (size + 8)
        print(f"{size // 1024:>3} KiB {changed:>8} {delta:>12} {100 * delta / len(new):>9.2f}")
    print("hashing cost, whole file, per digest and block size (MB/s)")
    for label, digest in DIGESTS.items():
        figures = []
        for size in SIZES:
            start = time.perf_counter()
            for _ in range(3):
                blocks(new, size, digest)
            figures.append(3 * len(new) / (time.perf_counter() - start) / 1e6)
        pairs = zip(SIZES, figures, strict=True)
        print(f"{label:>11}: " + "  ".join(f"{s // 1024}K {f:6.0f}" for s, f in pairs))
    start = time.perf_counter()
    hashlib.sha256(new).digest()
    print(f"whole-file sha256: {len(new) / (time.perf_counter() - start) / 1e6:.0f} MB/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300_000,
         int(sys.argv[2]) if len(sys.argv) > 2 else 1000)  # fmt: skip
