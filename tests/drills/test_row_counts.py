"""Row counts taken from a mysqldump file, in both of the tools' layouts,
with values a naive counter gets wrong (quotes, "),(", backslashes, "(")."""

from __future__ import annotations

from pathlib import Path

from engine.drill.run import compare_counts
from engine.dumps.row_counts import count_sql_rows

HEADER = "-- MariaDB dump 10.19\n"
CREATE = "CREATE TABLE `{t}` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB;\n"
ROWS = ["(1,'it\\'s (here)',NULL)", "(2,'a),(b',0x28292C28)", "(3,'back\\\\',-1.5)",
        "(4,'line\\nbreak','')"]  # fmt: skip


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "dump.sql"
    path.write_text(HEADER + body + "-- Dump completed on 2026-12-02\n")
    return path


def test_one_statement_per_line_mysqldump_layout(tmp_path: Path) -> None:
    body = (CREATE.format(t="wp_posts") + f"INSERT INTO `wp_posts` VALUES {','.join(ROWS)};\n"
            + f"INSERT INTO `wp_posts` VALUES {ROWS[0]};\n" + CREATE.format(t="empty")
            + CREATE.format(t="we`ird") + f"INSERT INTO `we``ird` VALUES {ROWS[1]};\n")  # fmt: skip
    assert count_sql_rows(_write(tmp_path, body)) == {"wp_posts": 5, "empty": 0, "we`ird": 1}


def test_one_row_per_line_mariadb_layout(tmp_path: Path) -> None:
    rows = ",\n".join(ROWS) + ";\n"
    body = CREATE.format(t="wp_posts") + "INSERT INTO `wp_posts` VALUES\n" + rows
    body += CREATE.format(t="after")  # the statement ended: this is not a row
    assert count_sql_rows(_write(tmp_path, body)) == {"wp_posts": 4, "after": 0}


def test_count_differences_name_each_table() -> None:
    assert compare_counts({"a": 3, "b": 1, "c": 0}, {"a": 2, "c": 0, "d": 5}) == [
        "table a: expected 3 rows (counted when the dump was made), found 2 after the restore",
        "table b: missing after the restore (expected 1 rows)",
        "table d: found after the restore (5 rows) but not in the dump's count",
    ]
