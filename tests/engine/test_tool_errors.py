"""The error line taken from database tools' stderr: the server's own line,
never the statement or the rows the tools echo around it. The samples are
what MariaDB 10.11's client and mariadb-dump, PostgreSQL 15's psql,
pg_restore and pg_dump, and the MongoDB Database Tools really print (the
MariaDB and PostgreSQL ones captured from the test images)."""

from __future__ import annotations

import pytest

from engine.dumps.tool_errors import (
    MAX_LINE,
    NOT_RECOGNISED,
    error_line,
    mongo_error_line,
    mysql_error_line,
    postgres_error_line,
)
from engine.secret import Secret

SECRET = "SECRET-ROW-7f3a9c"
ROWS = ",".join(f"({i},'{SECRET}-{i} alice@example.com {'x' * 200}')" for i in range(300))

# The client echoes the failed statement (here 60 KiB of rows) framed by
# dashes, then the error, which repeats the statement from where parsing
# stopped: "near '...'", over several lines when a value holds newlines.
MARIADB_SYNTAX_ERROR = (
    f"--------------\nINSERT INTO `wp_posts` VALUES {ROWS},(301,'{SECRET}' ,, 'multi\nline')\n"
    "--------------\n\n"
    "ERROR 1064 (42000) at line 12833: You have an error in your SQL syntax; check the manual "
    "that corresponds to your MariaDB server version for the right syntax to use near "
    f"' 'multi\nline {SECRET}')' at line 1\n"
)


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            MARIADB_SYNTAX_ERROR,
            "ERROR 1064 (42000) at line 12833: You have an error in your SQL syntax; check the "
            "manual that corresponds to your MariaDB server version for the right syntax to use",
        ),
        (
            f"--------------\nINSERT INTO u VALUES (1,'{SECRET}')\n--------------\n\n"
            f"ERROR 1062 (23000) at line 2: Duplicate entry '{SECRET}' for key 'user_email'\n",
            "ERROR 1062 (23000) at line 2: Duplicate entry '...' for key 'user_email'",
        ),
        (
            f"ERROR 1062 (23000) at line 2: Duplicate entry 'O'Brien {SECRET}' for key 'PRIMARY'",
            "ERROR 1062 (23000) at line 2: Duplicate entry '...' for key 'PRIMARY'",
        ),
        (
            f"ERROR 1366 (22007) at line 1: Incorrect integer value: '{SECRET}' for column "
            "`shop`.`w`.`id` at row 1",
            "ERROR 1366 (22007) at line 1: Incorrect integer value: '...' for column "
            "`shop`.`w`.`id` at row 1",
        ),
        (
            "ERROR 1406 (22001) at line 1: Data too long for column 'v' at row 1",
            "ERROR 1406 (22001) at line 1: Data too long for column 'v' at row 1",
        ),
        (
            "ERROR 1146 (42S02) at line 2: Table 'shop.nosuch' doesn't exist",
            "ERROR 1146 (42S02) at line 2: Table 'shop.nosuch' doesn't exist",
        ),
        (
            "ERROR 1045 (28000): Access denied for user 'root'@'localhost' (using password: YES)",
            "ERROR 1045 (28000): Access denied for user 'root'@'localhost' (using password: YES)",
        ),
        (
            "ERROR 2002 (HY000): Can't connect to local server through socket "
            "'/run/mysqld/mysqld.sock' (2)",
            "ERROR 2002 (HY000): Can't connect to local server through socket "
            "'/run/mysqld/mysqld.sock' (2)",
        ),
        (
            "mariadb-dump: Got error: 1049: \"Unknown database 'nosuchdb'\" when selecting the "
            "database",
            "mariadb-dump: Got error: 1049: \"Unknown database 'nosuchdb'\" when selecting the "
            "database",
        ),
        (
            "mariadb-dump: Couldn't execute 'SHOW FIELDS FROM `v`': View 'zz_broken.v' "
            "references invalid table(s) or column(s) or function(s) or definer/invoker of view "
            "lack rights to use them (1356)",
            "mariadb-dump: Couldn't execute '...': View 'zz_broken.v' references invalid table(s)"
            " or column(s) or function(s) or definer/invoker of view lack rights to use them "
            "(1356)",
        ),
        (
            "mysqldump: [Warning] Using a password on the command line interface can be "
            "insecure.\nmysqldump: Error 2013: Lost connection to MySQL server during query when "
            "dumping table `wp_posts` at row: 5120",
            "mysqldump: Error 2013: Lost connection to MySQL server during query when dumping "
            "table `wp_posts` at row: 5120",
        ),
    ],
)
def test_mysql_keeps_the_servers_line_without_the_sql_or_values(stderr: str, expected: str) -> None:
    line = mysql_error_line(stderr)
    assert line == expected
    assert SECRET not in line and len(line) <= MAX_LINE


def test_mysql_takes_the_line_after_the_echo_not_a_lookalike_in_a_row() -> None:
    """A row value may hold a line that looks like the client's error."""
    stderr = (
        f"--------------\nINSERT INTO t VALUES (1,'x\nERROR 1062 (23000): {SECRET}\n'),(2,,)\n"
        "--------------\n\nERROR 1064 (42000) at line 7: You have an error in your SQL syntax; "
        "check the manual that corresponds to your MariaDB server version for the right syntax "
        "to use near ',)' at line 3\n"
    )
    assert mysql_error_line(stderr).startswith("ERROR 1064 (42000) at line 7: You have an error")
    assert SECRET not in mysql_error_line(stderr)


def test_unrecognised_or_empty_output_is_not_shown() -> None:
    """Without an error line (the client died mid-statement), the tail is
    the echoed statement: nothing of it is shown."""
    echo_only = f"--------------\nINSERT INTO t VALUES (1,'{SECRET}')"
    assert mysql_error_line(echo_only) == NOT_RECOGNISED
    assert postgres_error_line(f"DETAIL:  Key (email)=({SECRET}) already exists.") == (
        NOT_RECOGNISED
    )
    assert mysql_error_line("") == postgres_error_line("\n \n") == mongo_error_line("") == ""
    assert error_line("redis", f"oops {SECRET}") == NOT_RECOGNISED


PG_DUPLICATE_ON_RESTORE = f"""pg_restore: while PROCESSING TOC:
pg_restore: from TOC entry 3340; 2606 16400 CONSTRAINT people people_email_key odoo
pg_restore: error: could not execute query: ERROR:  could not create unique index "people_email_key"
DETAIL:  Key (email)=({SECRET}) is duplicated.
Command was: ALTER TABLE ONLY public.people
    ADD CONSTRAINT people_email_key UNIQUE (email);


"""


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            PG_DUPLICATE_ON_RESTORE,
            "pg_restore: error: could not execute query: ERROR:  could not create unique index "
            '"people_email_key"',
        ),
        (
            f'pg_restore: error: COPY failed for table "people": ERROR:  invalid input syntax for '
            f'type integer: "{SECRET}"\nCONTEXT:  COPY people, line 1, column n: "{SECRET}"\n',
            'pg_restore: error: COPY failed for table "people": ERROR:  invalid input syntax for '
            'type integer: "..."',
        ),
        (
            f"psql:<stdin>:31: ERROR:  22007: invalid input syntax for type timestamp with time "
            f"zone: \"{SECRET}\"\nLINE 1: ALTER ROLE shop VALID UNTIL '{SECRET}';\n"
            "                                    ^\nLOCATION:  DateTimeParseError, datetime.c:4048",
            "psql:<stdin>:31: ERROR:  22007: invalid input syntax for type timestamp with time "
            'zone: "..."',
        ),
        (
            f'psql:<stdin>:1: ERROR:  syntax error at or near "{SECRET}"\n'
            f"LINE 1: SELECT 1 FROM people WHERE email = '{SECRET}' {SECRET};\n            ^",
            'psql:<stdin>:1: ERROR:  syntax error at or near "..."',
        ),
        (
            f'ERROR:  23505: duplicate key value violates unique constraint "u_pkey"\n'
            f"DETAIL:  Key (e)=({SECRET}) already exists.\nSCHEMA NAME:  public\nTABLE NAME:  u\n"
            "CONSTRAINT NAME:  u_pkey\nLOCATION:  _bt_check_unique, nbtinsert.c:664",
            'ERROR:  23505: duplicate key value violates unique constraint "u_pkey"',
        ),
        (
            'ERROR:  new row for relation "u" violates check constraint "u_n_check"\n'
            f"DETAIL:  Failing row contains ({SECRET}, -1).",
            'ERROR:  new row for relation "u" violates check constraint "u_n_check"',
        ),
        (
            'ERROR:  value "9999999999" is out of range for type integer\n'
            "LINE 1: SELECT '9999999999'::int",
            'ERROR:  value "..." is out of range for type integer',
        ),
        (
            'ERROR:  invalid byte sequence for encoding "UTF8": 0xe9 0x20 0x53',
            'ERROR:  invalid byte sequence for encoding "UTF8": 0x...',
        ),
        (
            'psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" '
            'failed: FATAL:  password authentication failed for user "odoo"',
            'psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" '
            'failed: FATAL:  password authentication failed for user "odoo"',
        ),
        (
            'psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" '
            'failed: FATAL:  database "postgres" does not exist',
            'psql: error: connection to server on socket "/var/run/postgresql/.s.PGSQL.5432" '
            'failed: FATAL:  database "postgres" does not exist',
        ),
        (
            "pg_dump: error: query failed: ERROR:  permission denied for table people\n"
            "pg_dump: detail: Query was: LOCK TABLE public.people IN ACCESS SHARE MODE",
            "pg_dump: error: query failed: ERROR:  permission denied for table people",
        ),
        (
            'pg_dump: error: Dumping the contents of table "people" failed: PQgetResult() '
            "failed.\npg_dump: detail: Error message from server: ERROR:  could not read block 0"
            ' in file "base/16384/16385": read only 0 of 8192 bytes\n'
            "pg_dump: detail: Command was: COPY public.people (n, email) TO stdout;",
            "pg_dump: detail: Error message from server: ERROR:  could not read block 0 in file "
            '"base/16384/16385": read only 0 of 8192 bytes',
        ),
        (
            "pg_restore: error: input file does not appear to be a valid archive (too short?)",
            "pg_restore: error: input file does not appear to be a valid archive (too short?)",
        ),
    ],
)
def test_postgres_keeps_the_first_error_line_without_detail_or_values(
    stderr: str, expected: str
) -> None:
    line = postgres_error_line(stderr)
    assert line == expected
    assert SECRET not in line and len(line) <= MAX_LINE


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            "2024-05-01T12:00:00.123+0000\tpreparing collections to restore from\n"
            "2024-05-01T12:00:00.456+0000\treading metadata for shop.users from archive\n"
            "2024-05-01T12:00:01.002+0000\tFailed: shop.users: error restoring from archive: "
            "bulk write exception: write errors: [E11000 duplicate key error collection: "
            f'shop.users index: email_1 dup key: {{ email: "{SECRET}@example.com" }}]',
            "Failed: shop.users: error restoring from archive: bulk write exception: write "
            "errors: [E11000 duplicate key error collection: shop.users index: email_1 dup key: "
            "{...}",
        ),
        (
            "2024-05-01T12:00:00.000+0000\tFailed: error connecting to db server: server returned"
            " error on SASL authentication step: Authentication failed.",
            "Failed: error connecting to db server: server returned error on SASL authentication"
            " step: Authentication failed.",
        ),
        (
            "MongoServerSelectionError: connect ECONNREFUSED 127.0.0.1:27017",
            "MongoServerSelectionError: connect ECONNREFUSED 127.0.0.1:27017",
        ),
    ],
)
def test_mongo_keeps_the_failed_line_without_documents(stderr: str, expected: str) -> None:
    line = mongo_error_line(stderr)
    assert line == expected
    assert SECRET not in line


def test_error_line_scrubs_secrets_and_is_bounded() -> None:
    password = Secret("pw-Secret-42")
    denied = "ERROR 1045 (28000): Access denied for user 'pw-Secret-42'@'localhost'"
    assert error_line("mariadb", denied, password, None) == (
        "ERROR 1045 (28000): Access denied for user '***'@'localhost'"
    )
    long_message = "ERROR:  could not open relation " + "with a very long name " * 40
    line = error_line("postgres", long_message)
    assert len(line) == MAX_LINE and line.endswith("...")
    assert error_line("mysql", "mariadb: unknown option '--max-allowed-packet=1G'\x1b[0m") == (
        "mariadb: unknown option '--max-allowed-packet=1G' [0m"
    )
