"""Dump throughput: engine.dumps.dump_database vs the same dump tool run by
hand (`docker exec <db> <tool> <same options> > /dev/null`, docker CLI).

Deploys its own WordPress-like (MariaDB 10.11) and Odoo-like (PostgreSQL 15)
stacks with tests.stacks, fills one database in each with about --size-mb of
rows generated server-side, then alternates engine and by-hand runs on the
same database in the same run and prints MB/s of each (dump bytes / wall
time; best and median of --rounds, runs alternating in order), the ratios
(target >= 0.9, judged on medians: on a shared machine a single quiet moment
makes any one run look fast), and how much this process's resident memory
grew while the engine dumped (it streams: the growth must not follow the
dump size). Everything it created is removed; exit status 1 below target.

Three timings per round: by hand; the engine's stream of the same tool with
the same options on the same database (exec through the Engine API into a
spool file with SHA-256, what dump_database does for each database: the
like-for-like figure the 0.9 target is about); and dump_database end to end
(version and database-list queries, every database of the server plus the
roles for PostgreSQL, the checks of each file: trailer, custom-format walk,
`pg_restore --list`), whose fixed cost matters less as databases grow.

    .venv/bin/python bench/bench_dumps.py [--size-mb 300] [--rounds 5]
"""

# The SQL below is built from this file's constants, never from input.
# ruff: noqa: S608

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker

from engine.dumps import DumpFile, dump_database
from engine.dumps.mysql import DUMP_OPTIONS as MYSQL_OPTIONS
from engine.dumps.postgres import DUMP_OPTIONS as PG_OPTIONS
from engine.dumps.types import Throttled, dump_to_spool
from engine.inventory import ContainerInfo, DatabaseCredentials, DatabaseInfo
from engine.progress import no_progress
from engine.secret import Secret
from tests.stacks import (
    ComposeStack,
    odoo_stack,
    random_project,
    wait_for_mariadb,
    wait_for_postgres,
    wordpress_stack,
)

MB = 1_000_000
ROW_BYTES = 1000  # payload per generated row


class PeakRss(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.start_kib = self.peak_kib = self.rss_kib()
        self.done = threading.Event()

    @staticmethod
    def rss_kib() -> int:
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("VmRSS:")).split()[1])

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak_kib = max(self.peak_kib, self.rss_kib())


def fill_mariadb(stack: ComposeStack, password: str, rows: int) -> None:
    sql = (
        "CREATE DATABASE bench; USE bench; CREATE TABLE posts (id INT PRIMARY KEY,"
        " title VARCHAR(200), body TEXT, meta BLOB) ENGINE=InnoDB;"
        " INSERT INTO posts SELECT seq, CONCAT('Post ', seq), "
        f" REPEAT(MD5(seq), {ROW_BYTES // 32 - 1}), UNHEX(SHA2(seq, 256)) FROM seq_1_to_{rows}"
    )
    stack.exec("mariadb", ["mariadb", "-uroot", "-e", sql], {"MYSQL_PWD": password})


def fill_postgres(stack: ComposeStack, rows: int) -> None:
    def psql(database: str, sql: str) -> None:
        cmd = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-q", "-U", stack.project, "-d", database]
        stack.exec("postgres", [*cmd, "-c", sql])

    psql("postgres", "CREATE DATABASE bench")
    psql("bench", "CREATE TABLE posts (id int PRIMARY KEY, title text, body text, meta bytea);"
                  " INSERT INTO posts SELECT g, 'Post ' || g,"
                  f" repeat(md5(g::text), {ROW_BYTES // 32 - 1}), decode(md5(g::text), 'hex')"
                  f" FROM generate_series(1, {rows}) g")  # fmt: skip


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def by_hand(container: str, cmd: list[str], env: dict[str, str]) -> None:
    """The tool through the docker CLI into /dev/null. Variables are passed
    as `-e NAME` (value from our environment), never as argv values."""
    flags = [arg for name in env for arg in ("-e", name)]
    with open(os.devnull, "wb") as null:
        subprocess.run(
            ["docker", "exec", *flags, container, *cmd],
            stdout=null,
            check=True,
            env={**os.environ, **env},
        )


def bench(
    label: str,
    client: docker.DockerClient,
    db: DatabaseInfo,
    hand_cmd: list[str],
    hand_env: dict[str, str],
    rounds: int,
) -> float:
    """Best of ROUNDS, alternating: by hand; the engine's stream of the same
    tool and options on the same database (exec through the Engine API into
    a spool file with SHA-256: what dump_database does per database); and
    dump_database end to end (every database, roles, checks)."""
    times: dict[str, list[float]] = {"hand": [], "stream": [], "engine": []}
    growth_mib = 0.0
    size = total = 0
    spool = Path(tempfile.mkdtemp(prefix="bench-dumps-"))
    dumps: list[DumpFile] = []

    def hand() -> None:
        by_hand(db.container.name, hand_cmd, hand_env)

    def stream() -> None:
        path = spool / "stream.out"
        throttled = Throttled(no_progress, "dumping", label, None)
        dump_to_spool(client, db, hand_cmd, hand_env, path, throttled, label)
        path.unlink()

    def engine() -> None:
        nonlocal growth_mib
        rss = PeakRss()
        rss.start()
        dumps[:] = dump_database(client, db, spool / "engine")
        rss.done.set()
        rss.join()
        growth_mib = max(growth_mib, (rss.peak_kib - rss.start_kib) / 1024)
        for dump in dumps:
            dump.path.unlink()

    runs = {"hand": hand, "stream": stream, "engine": engine}
    try:
        for round_ in range(rounds):
            # Alternate the order: on a shared machine, load drifts.
            order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
            for key in order:
                times[key].append(timed(runs[key]))
        size = next(d.size for d in dumps if d.database == "bench")
        total = sum(d.size for d in dumps)
    finally:
        shutil.rmtree(spool, ignore_errors=True)
    rate = {k: size / MB / min(v) for k, v in times.items()}
    print(f"{label}: bench database dump {size / MB:.0f} MB (all files {total / MB:.0f} MB)")
    titles = {
        "hand": "by hand (docker exec > /dev/null)",
        "stream": "engine stream, same database",
        "engine": "engine dump_database, end to end",
    }
    for key, title in titles.items():
        all_runs = ", ".join(f"{t:.2f}s" for t in times[key])
        median = size / MB / statistics.median(times[key])
        print(f"  {title:<34} {rate[key]:7.1f} MB/s best, {median:6.1f} median  ({all_runs})")
    median = {k: statistics.median(v) for k, v in times.items()}
    ratio = median["hand"] / median["stream"]
    print(
        f"  ratio stream/hand: median {ratio:.2f} (target >= 0.9), "
        f"best {rate['stream'] / rate['hand']:.2f}; end to end/hand: median "
        f"{median['hand'] / median['engine']:.2f}, best {rate['engine'] / rate['hand']:.2f}"
    )
    print(f"  RSS growth of this process during dump_database: {growth_mib:.1f} MiB")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=300, help="rows to generate per database")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = args.size_mb * MB // ROW_BYTES
    client = docker.from_env(timeout=300)
    workdir = Path(tempfile.mkdtemp(prefix="bench-dumps-stacks-"))
    stacks: list[ComposeStack] = []
    ratios: list[float] = []
    try:
        wp = wordpress_stack(client, random_project("wordpress"), workdir / "wp")
        stacks.append(wp)
        wp.up()
        password = wp.services[0].environment["MYSQL_ROOT_PASSWORD"]
        wait_for_mariadb(wp.container("mariadb"), password)
        odoo = odoo_stack(client, random_project("odoo"), workdir / "odoo")
        stacks.append(odoo)
        odoo.up()
        wait_for_postgres(odoo.container("postgres"), odoo.project)
        started = time.perf_counter()
        fill_mariadb(wp, password, rows)
        fill_postgres(odoo, rows)
        print(f"filled {rows} rows per database in {time.perf_counter() - started:.0f}s")

        maria = wp.container("mariadb")
        db = DatabaseInfo(
            ContainerInfo(maria.id, maria.name, "mariadb", "mariadb:10.11", "running"),
            "mariadb",
            DatabaseCredentials("root", Secret(password)),
        )
        cmd = ["mariadb-dump", "--user=root", *MYSQL_OPTIONS, "--databases", "--", "bench"]
        ratios.append(bench("MariaDB", client, db, cmd, {"MYSQL_PWD": password}, args.rounds))

        pg = odoo.container("postgres")
        db = DatabaseInfo(
            ContainerInfo(pg.id, pg.name, "postgres", "postgres:15", "running"),
            "postgres",
            DatabaseCredentials(odoo.project, None),
        )
        env = {"PGUSER": odoo.project, "PGDATABASE": "bench", "PGCLIENTENCODING": "UTF8"}
        ratios.append(bench("PostgreSQL", client, db, ["pg_dump", *PG_OPTIONS], env, args.rounds))
    finally:
        for stack in stacks:
            stack.remove()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(r >= 0.9 for r in ratios) else 1


if __name__ == "__main__":
    sys.exit(main())
