"""A dump taken while the app keeps writing is transactionally consistent.

A bank: money moves from `checking` to `savings` (two tables, with a big
table dumped between them), one transfer per transaction, in a tight loop
run by a writer inside the database container (one client session fed by a
shell loop: thousands of transactions a second, no exec per transaction).
The dump runs while the writer runs; restored into a fresh database, the
total must be exact, and the restored transfer counter must lie between its
values before and after the dump (a snapshot taken during the dump).

The money only ever flows one way, so a dump without a snapshot is wrong
for sure, not by chance: the MariaDB test proves its own sensitivity by
dumping once without --single-transaction and finding money created."""

# The SQL below is built from this file's constants, never from input.

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import docker
import pytest

import engine.dumps.mysql as dumps_mysql
from engine.dumps import DumpFile, dump_database, restore_database
from engine.inventory import ContainerInfo, DatabaseCredentials, DatabaseInfo
from engine.secret import Secret
from tests.stacks import ComposeStack, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ACCOUNTS = 1000
BALANCE = 1000
TOTAL = 2 * ACCOUNTS * BALANCE
FILLER_ROWS = 150_000  # ~30 MB between checking and savings: the dump takes a while

TRANSFER = (
    "a=$((RANDOM % {n} + 1)); b=$((RANDOM % {n} + 1)); m=$((RANDOM % 50 + 1)); "
    'echo "{begin}; UPDATE checking SET balance = balance - $m WHERE id = $a; '
    "UPDATE savings SET balance = balance + $m WHERE id = $b; "
    'UPDATE counter SET n = n + 1; COMMIT;"'
)
WRITER = "while [ ! -e /tmp/stop-writer ]; do {transfer}; done | {client}"


class Writer:
    """The money-moving loop, as a detached exec in the database container."""

    def __init__(self, client: docker.DockerClient, container: str, script: str, env: dict):
        self.client, self.container = client, container
        created = client.api.exec_create(container, ["bash", "-c", script], environment=env)
        self.exec_id = created["Id"]
        client.api.exec_start(self.exec_id, detach=True)

    def stop(self) -> int:
        stopper = self.client.api.exec_create(self.container, ["touch", "/tmp/stop-writer"])
        self.client.api.exec_start(stopper["Id"])
        wait_until(lambda: not self.client.api.exec_inspect(self.exec_id)["Running"], 60, "writer")
        return self.client.api.exec_inspect(self.exec_id)["ExitCode"]


def seed_sql(rows: str) -> str:
    return f"""
        CREATE TABLE checking (id INT PRIMARY KEY, balance BIGINT NOT NULL);
        CREATE TABLE m_filler (id INT PRIMARY KEY, pad VARCHAR(250) NOT NULL);
        CREATE TABLE savings (id INT PRIMARY KEY, balance BIGINT NOT NULL);
        CREATE TABLE counter (id INT PRIMARY KEY, n BIGINT NOT NULL);
        INSERT INTO checking SELECT n, {BALANCE} FROM {rows.format(ACCOUNTS)};
        INSERT INTO savings SELECT n, {BALANCE} FROM {rows.format(ACCOUNTS)};
        INSERT INTO m_filler SELECT n, REPEAT('x', 200) FROM {rows.format(FILLER_ROWS)};
        INSERT INTO counter VALUES (1, 0);
    """


TOTAL_SQL = "SELECT (SELECT SUM(balance) FROM checking) + (SELECT SUM(balance) FROM savings)"


# -- MariaDB -------------------------------------------------------------------


def test_mariadb_dump_under_concurrent_transfers_is_consistent(
    wordpress: ComposeStack,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = wordpress.container("mariadb")
    password = wordpress.services[0].environment["MYSQL_ROOT_PASSWORD"]
    env = {"MYSQL_PWD": password}

    def sql(statement: str, database: str = "bank") -> str:
        cmd = ["mariadb", "-uroot", "-N", "-B", database, "-e", statement]
        return wordpress.exec("mariadb", cmd, env).strip()

    sql("CREATE DATABASE bank", "mysql")
    sql(seed_sql("(SELECT seq AS n FROM seq_1_to_{}) s"))
    db = DatabaseInfo(
        ContainerInfo(container.id, container.name, "mariadb", "mariadb:10.11", "running"),
        "mariadb",
        DatabaseCredentials("root", Secret(password)),
    )
    transfer = TRANSFER.format(n=ACCOUNTS, begin="START TRANSACTION")
    script = WRITER.format(transfer=transfer, client="mariadb -uroot bank")
    writer = Writer(docker_client, container.id, script, env)
    try:
        wait_until(lambda: int(sql("SELECT n FROM counter")) > 100, 30, "the writer")

        # Control: no snapshot, no locks. Money appears (the check can fail).
        monkeypatch.setattr(dumps_mysql, "DUMP_OPTIONS", tuple(
            "--skip-lock-tables" if o == "--single-transaction" else o
            for o in dumps_mysql.DUMP_OPTIONS))  # fmt: skip
        control = bank_dump(dump_database(docker_client, db, tmp_path / "control"))
        monkeypatch.undo()
        renamed = tmp_path / "control.sql"
        renamed.write_bytes(control.path.read_bytes().replace(b"`bank`", b"`bank_control`"))
        restore_database(docker_client, db, [replace(control, path=renamed)])
        assert int(sql(TOTAL_SQL, "bank_control")) > TOTAL

        before = int(sql("SELECT n FROM counter"))
        dump = bank_dump(dump_database(docker_client, db, tmp_path / "spool"))
        after = int(sql("SELECT n FROM counter"))
        assert after > before, "no transfer happened during the dump"
        print(f"MariaDB: {after - before} transfers committed during the dump")
    finally:
        assert writer.stop() == 0
    assert int(sql(TOTAL_SQL)) == TOTAL

    sql("DROP DATABASE bank", "mysql")  # restore into a fresh database
    restore_database(docker_client, db, [dump])
    assert int(sql(TOTAL_SQL)) == TOTAL
    assert before <= int(sql("SELECT n FROM counter")) <= after


def bank_dump(dumps: list[DumpFile]) -> DumpFile:
    return next(d for d in dumps if d.database == "bank")


# -- PostgreSQL ----------------------------------------------------------------


def test_postgres_dump_under_concurrent_transfers_is_consistent(
    odoo: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    container = odoo.container("postgres")
    user = odoo.project

    def sql(statement: str, database: str = "bank") -> str:
        cmd = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-U", user, "-d", database,
               "-c", statement]  # fmt: skip
        return odoo.exec("postgres", cmd).strip()

    sql("CREATE DATABASE bank", "postgres")
    sql(seed_sql("generate_series(1, {}) n").replace("REPEAT('x', 200)", "repeat('x', 200)"))
    db = DatabaseInfo(
        ContainerInfo(container.id, container.name, "postgres", "postgres:15", "running"),
        "postgres",
        DatabaseCredentials(user, None),
    )
    transfer = TRANSFER.format(n=ACCOUNTS, begin="BEGIN")
    client = f"psql -X -q -v ON_ERROR_STOP=1 -U {user} -d bank"
    writer = Writer(docker_client, container.id,
                    WRITER.format(transfer=transfer, client=client), {})  # fmt: skip
    try:
        wait_until(lambda: int(sql("SELECT n FROM counter")) > 100, 30, "the writer")
        before = int(sql("SELECT n FROM counter"))
        dumps = dump_database(docker_client, db, tmp_path / "spool")
        after = int(sql("SELECT n FROM counter"))
        assert after > before, "no transfer happened during the dump"
        print(f"PostgreSQL: {after - before} transfers committed during the dump")
    finally:
        assert writer.stop() == 0
    assert int(sql(TOTAL_SQL)) == TOTAL

    sql("DROP DATABASE bank", "postgres")  # restore into a fresh database
    restore_database(docker_client, db, [d for d in dumps if d.database in (None, "bank")])
    assert int(sql(TOTAL_SQL)) == TOTAL
    assert before <= int(sql("SELECT n FROM counter")) <= after
