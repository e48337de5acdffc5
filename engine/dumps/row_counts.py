"""Per-table row counts of a dump, counted from the dump file itself.

Why from the file and not `SELECT COUNT(*)` on the server: the count must
describe exactly the rows the dump holds. mysqldump takes its own
consistent snapshot (--single-transaction) that no other session can
share, so a COUNT(*) beside it would count a different moment of a live
app (and information_schema's estimates are not exact for InnoDB). The
file is exact, costs no server time, and is read right after it was
written (still in the page cache); bench/bench_row_counts.py measures it.

SQL (mysqldump/mariadb-dump): every table has a `CREATE TABLE` line, its
rows come in extended `INSERT INTO ... VALUES (..),(..);` statements, on
one line (mysqldump, MariaDB before 10.x) or one row per line (MariaDB
10.11's mariadb-dump). Strings are escaped by the tool (no raw newline,
quotes as \\'), and values outside strings are numbers, NULL and hex
literals (--hex-blob): so each "(" outside quoted strings starts one row.

pg_dump custom format: each table's data block holds COPY text rows, one
line each (newlines inside values are escaped as \\n), so its line count is
its row count. Keys are "schema.table"."""

from __future__ import annotations

import os
import re
from pathlib import Path

from engine.dumps.pg_format import (
    BLK_BLOBS,
    BLK_DATA,
    NewerFormat,
    _Cursor,
    _read_header,
    _read_toc,
    _skip_chunks,
)
from engine.errors import DatabaseDumpError

_CREATE = re.compile(rb"CREATE TABLE `((?:[^`]|``)+)` \(")
_INSERT = re.compile(rb"INSERT INTO `((?:[^`]|``)+)` (?:\([^)]*\) )?VALUES\s*")
# A quoted string as mysqldump writes it: backslash escapes, no raw quote.
# Unrolled ("normal* (special normal*)*"): one regex step per run of plain bytes.
_STRING = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'", re.DOTALL)


def _name(raw: bytes) -> str:
    return raw.replace(b"``", b"`").decode("utf-8", "replace")


def count_sql_rows(path: Path) -> dict[str, int]:
    """{table: rows} of a mysqldump file; tables without rows count 0."""
    counts: dict[str, int] = {}
    table: str | None = None  # inside this table's INSERT statement
    per_line = False  # its rows come one per line
    with path.open("rb") as f:
        for line in f:
            if table is not None and per_line:
                # One row per line: no need to look inside it (the cheap path,
                # and the common one: MariaDB 10.11 writes this layout).
                counts[table] += 1
                if line.rstrip().endswith(b";"):
                    table = None
                continue
            if table is None:
                if line.startswith(b"CREATE TABLE `"):
                    match = _CREATE.match(line)
                    if match is not None:
                        counts.setdefault(_name(match.group(1)), 0)
                    continue
                if not line.startswith(b"INSERT INTO `"):
                    continue
                match = _INSERT.match(line)
                if match is None:
                    continue
                table = _name(match.group(1))
                counts.setdefault(table, 0)
                body = line[match.end() :]
                per_line = not body.strip()
                if per_line:
                    continue
            else:
                body = line
            if b"'" in body:
                body = _STRING.sub(b"''", body)
            counts[table] += body.count(b"(")
            if body.rstrip().endswith(b";"):
                table = None
    return counts


def count_pg_custom_rows(path: Path) -> dict[str, int] | None:
    """{"schema.table": rows} of a pg_dump custom-format file (uncompressed
    data blocks: this product dumps with --compress=0); None when the file
    comes from a pg_dump newer than the parser."""
    names: dict[int, tuple[str, str, str]] = {}
    with path.open("rb") as f:
        c = _Cursor(f, os.fstat(f.fileno()).st_size)
        try:
            (vmaj, vmin, _), _db, _version = _read_header(c)
        except NewerFormat:
            return None
        with_data, _ids = _read_toc(c, (vmaj, vmin), names)
        counts = {
            f"{names[i][1]}.{names[i][2]}": 0 for i in with_data if names[i][0] == "TABLE DATA"
        }
        while not c.at_end():
            block_type = c.byte()
            dump_id = c.int()
            desc, schema, table = names.get(dump_id, ("", "", ""))
            if block_type == BLK_DATA and desc == "TABLE DATA":
                counts[f"{schema}.{table}"] = _count_lines(c)
            elif block_type == BLK_DATA:
                _skip_chunks(c)
            elif block_type == BLK_BLOBS:
                while c.int() != 0:
                    _skip_chunks(c)
            else:
                raise DatabaseDumpError(f"corrupt custom-format dump (block type {block_type})")
    return counts


# pg_dump ends each table's COPY data with the end-of-data line and two
# empty lines (what a plain-format restore prints after the rows).
_COPY_ENDS = ((b"\n\\.\n\n\n", 3), (b"\n\\.\n", 1))


def _count_lines(c: _Cursor) -> int:
    lines = 0
    tail = b"\n"  # as if a line ended just before the block: "\." may come first
    while True:
        length = c.int()
        if length == 0:
            break
        if length < 0:
            raise DatabaseDumpError("corrupt custom-format dump (negative chunk length)")
        data = c.take(length)
        lines += data.count(b"\n")
        tail = (tail + data)[-8:]
    for end, extra in _COPY_ENDS:
        if tail.endswith(end):
            return lines - extra
    return lines
