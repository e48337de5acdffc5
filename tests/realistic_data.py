"""Realistic data for end-to-end tests: a MariaDB table of many rows of
non-repeating text (so a dump is megabytes and its restore streams for
seconds), generated inside the server, not sent over the exec socket."""

from __future__ import annotations

from tests.stacks import ComposeStack


def mariadb_sql(stack: ComposeStack, query: str, database: str = "wordpress") -> str:
    password = stack.services[0].environment["MYSQL_ROOT_PASSWORD"]
    return stack.exec(
        "mariadb", ["mariadb", "-uroot", "-N", "-B", database, "-e", query],
        environment={"MYSQL_PWD": password},
    ).strip()  # fmt: skip


def load_rows(stack: ComposeStack, table: str, rows: int, row_bytes: int = 600) -> None:
    """TABLE with ROWS rows of about ROW_BYTES bytes of hex text each, made by
    MariaDB's SEQUENCE engine (seq_1_to_N) from SHA-2 digests: every row
    differs, so the dump is as large as the data."""
    digests = max(1, row_bytes // 128)
    body = "CONCAT(" + ", ".join(f"SHA2(CONCAT(seq, '-{i}'), 512)" for i in range(digests)) + ")"
    mariadb_sql(
        stack,
        f"CREATE TABLE {table} (id INT PRIMARY KEY, body TEXT NOT NULL) ENGINE=InnoDB; "
        f"INSERT INTO {table} SELECT seq, {body} FROM seq_1_to_{rows}",
    )


def table_digest(stack: ComposeStack, table: str) -> str:
    """One checksum of the whole table's content, to compare before and after."""
    return mariadb_sql(
        stack, "SELECT COUNT(*), SUM(LENGTH(body)), "
        f"BIT_XOR(CONV(LEFT(MD5(CONCAT(id, ':', body)), 16), 16, 10)) FROM {table}",
    )  # fmt: skip
