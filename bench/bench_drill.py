"""Restore drill cost: the per-table row count taken at dump time, and the
drill of a ~100 MB dump, each against its anchor in the same run.

Deploys its own MariaDB 10.11 and PostgreSQL 15 stacks (tests.stacks), fills
one database in each with about --size-mb of rows (bench_dumps' generators),
dumps it with engine.dumps.dump_database, then for each engine prints:

- count: the time to count rows from the dump file (engine.dumps.row_counts,
  what dump_database now does after each dump) against the dump's own time:
  the added cost of recording row counts, as a ratio;
- drill: engine.drill.run.drill_databases on that dump (sandbox container of
  the same image with no network and a temporary volume, server start,
  restore, every database and table counted), against the anchor, the same
  restore by hand with the docker CLI (`docker run` of the same image,
  wait, `docker exec -i ... < dump`, `docker rm -f -v`).

Deep verify and the archive pass that extracts the dumps are measured by
bench_backup/bench_restore; they are not repeated here.

    .venv/bin/python bench/bench_drill.py [--size-mb 100] [--cpu-shares 256]
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker

from bench.bench_dumps import MB, ROW_BYTES, fill_mariadb, fill_postgres
from engine.drill.deadline import Deadline
from engine.drill.run import drill_databases
from engine.drill.sandbox import Limits
from engine.dumps import DumpFile, dump_database
from engine.dumps.row_counts import count_pg_custom_rows, count_sql_rows
from engine.inventory import ContainerInfo, DatabaseCredentials, DatabaseInfo
from engine.secret import Secret
from tests.stacks import (
    ComposeStack,
    odoo_stack,
    random_project,
    wait_for_mariadb,
    wait_for_postgres,
    wordpress_stack,
)


def by_hand(image: str, engine: str, dump: DumpFile) -> float:
    """The anchor: the same restore with the docker CLI; seconds."""
    name = f"bench-drill-anchor-{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    if engine == "postgres":
        env = ["-e", f"POSTGRES_PASSWORD={password}"]
        ready = ["pg_isready", "-h", "127.0.0.1", "-U", "postgres"]
        # The dump's owner role is not in this server (the drill restores the
        # globals first): ownership is left out here, as a person would.
        restore = ["pg_restore", "-U", "postgres", "--create", "--no-owner", "--no-acl",
                   "--dbname=template1"]  # fmt: skip
    else:
        env = ["-e", f"MARIADB_ROOT_PASSWORD={password}"]
        ready = ["mariadb", "--protocol=tcp", "-h127.0.0.1", "-uroot", f"-p{password}", "-e",
                 "SELECT 1"]  # fmt: skip
        restore = ["mariadb", "-uroot", f"-p{password}"]
    started = time.perf_counter()
    subprocess.run(["docker", "run", "-d", "--name", name, "--network", "none", *env, image],
                   check=True, capture_output=True)  # fmt: skip
    try:
        while subprocess.run(["docker", "exec", name, *ready], capture_output=True).returncode:
            time.sleep(0.5)
        with dump.path.open("rb") as f:
            subprocess.run(["docker", "exec", "-i", name, *restore], stdin=f, check=True,
                           capture_output=True)  # fmt: skip
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)
    return time.perf_counter() - started


def bench(
    label: str, client: docker.DockerClient, db: DatabaseInfo, spool: Path, limits: Limits
) -> None:
    started = time.perf_counter()
    dumps = dump_database(client, db, spool)
    dump_seconds = time.perf_counter() - started
    main = max(dumps, key=lambda d: d.size)
    counter = count_pg_custom_rows if main.format == "pg_custom" else count_sql_rows
    started = time.perf_counter()
    counts = counter(main.path)
    count_seconds = time.perf_counter() - started
    print(f"{label}: dump {main.size / MB:.0f} MB in {dump_seconds:.1f} s; row count "
          f"{count_seconds:.2f} s ({count_seconds / dump_seconds:.1%} of the dump), "
          f"{sum(counts.values())} rows in {len(counts)} tables")  # fmt: skip
    image = client.api.inspect_container(db.container.id)["Image"]
    entries = [d.to_json() for d in dumps]
    files = {d.archive_name: d.path for d in dumps}
    started = time.perf_counter()
    results = drill_databases(client, f"bench-{secrets.token_hex(4)}", entries, files,
                              lambda _c, _g: (image, "bench"),
                              deadline=Deadline(3600), limits=limits)  # fmt: skip
    drill_seconds = time.perf_counter() - started
    assert all(r.ok for r in results), [r.reason for r in results]
    anchor = by_hand(image, db.engine, main)
    print(f"{label}: drill {drill_seconds:.1f} s (start, restore, counts of every table; "
          f"sandbox cpu shares {limits.cpu_shares}); "
          f"by hand (docker run + restore, no checks) {anchor:.1f} s; "
          f"ratio {anchor / drill_seconds:.2f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument(
        "--cpu-shares", type=int, default=Limits().cpu_shares,
        help="the sandbox's CPU weight (the drill's own: 256; the anchor runs at Docker's 1024, "
        "so 1024 compares like with like on a busy host)",
    )  # fmt: skip
    args = parser.parse_args()
    limits = Limits(cpu_shares=args.cpu_shares)
    rows = args.size_mb * MB // ROW_BYTES
    client = docker.from_env(timeout=300)
    workdir = Path(tempfile.mkdtemp(prefix="bench-drill-"))
    stacks: list[ComposeStack] = []
    try:
        wp = wordpress_stack(client, random_project("wordpress"), workdir / "wp")
        stacks.append(wp)
        wp.up()
        password = wp.services[0].environment["MYSQL_ROOT_PASSWORD"]
        wait_for_mariadb(wp.container("mariadb"), password)
        fill_mariadb(wp, password, rows)
        maria = wp.container("mariadb")
        db = DatabaseInfo(
            ContainerInfo(maria.id, maria.name, "mariadb", "mariadb:10.11", "running"),
            "mariadb", DatabaseCredentials("root", Secret(password)),
        )  # fmt: skip
        bench("MariaDB", client, db, workdir / "spool-maria", limits)

        odoo = odoo_stack(client, random_project("odoo"), workdir / "odoo")
        stacks.append(odoo)
        odoo.up()
        wait_for_postgres(odoo.container("postgres"), odoo.project)
        fill_postgres(odoo, rows)
        pg = odoo.container("postgres")
        db = DatabaseInfo(
            ContainerInfo(pg.id, pg.name, "postgres", "postgres:15", "running"),
            "postgres", DatabaseCredentials(odoo.project, None),
        )  # fmt: skip
        bench("PostgreSQL", client, db, workdir / "spool-pg", limits)
    finally:
        for stack in stacks:
            stack.remove()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
