"""PostgreSQL dumps and restores against a real PostgreSQL 15 in a
Compose-like Odoo stack, whose POSTGRES_USER is the app id with trust auth
(no password at all). DatabaseInfo is built here from the container's
environment, independently of discovery.

One stack serves the module; each test owns the databases and roles it
changes, and puts shared settings (authentication) back."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from engine.dumps import (
    DatabaseRestoreError,
    dump_database,
    restore_database,
    verify_dump,
    wait_until_ready,
)
from engine.errors import DatabaseDumpError
from engine.inventory import ContainerInfo, DatabaseCredentials, DatabaseInfo
from engine.secret import Secret
from tests.images import APP_IMAGE
from tests.stacks import TEST_LABEL, ComposeStack, odoo_stack, random_project, wait_for_postgres

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PARTNERS, MOVES, LINES = 50_000, 20_000, 100_000  # 170k rows in odoo_prod
REPORT_PASSWORD = "report-Pa55"  # a role's password, dumped as a SCRAM hash


# -- Fixtures and helpers ------------------------------------------------------


@pytest.fixture(scope="module")
def stack(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeStack]:
    project = random_project("odoo")
    stack = odoo_stack(docker_client, project, tmp_path_factory.mktemp(project) / project)
    try:
        stack.up()
        wait_for_postgres(stack.container("postgres"), project)
        seed_odoo(stack)
        yield stack
    finally:
        stack.remove()


def psql(
    stack: ComposeStack, database: str, statements: str, user: str = "", password: str = ""
) -> str:
    cmd = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-U", user or stack.project,
           "-d", database, "-c", statements]  # fmt: skip
    return stack.exec("postgres", cmd, {"PGPASSWORD": password} if password else {})


def app_info(stack: ComposeStack, password: str | None = None) -> DatabaseInfo:
    """As discovery reads it: POSTGRES_USER from the environment, and no
    POSTGRES_PASSWORD (trust), unless a test set one."""
    container = stack.container("postgres")
    container.reload()
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert "POSTGRES_PASSWORD" not in env and env["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    return info(container, env["POSTGRES_USER"], password)


def info(container: Container, user: str, password: str | None) -> DatabaseInfo:
    return DatabaseInfo(
        ContainerInfo(container.id, container.name, "postgres", "postgres:15", "running"),
        "postgres",
        DatabaseCredentials(user, Secret(password) if password else None, ("postgres",)),
    )


def seed_odoo(stack: ComposeStack) -> None:
    """An Odoo-like database owned by the app user: partners, users, moves
    and move lines (jsonb, bytea, numeric), foreign keys, indexes, a
    sequence, a view, a function, a comment, and roles with grants."""
    psql(stack, "postgres", "CREATE ROLE odoo_readonly NOLOGIN; "
         f"CREATE ROLE odoo_report LOGIN PASSWORD '{REPORT_PASSWORD}'")  # fmt: skip
    psql(stack, "postgres", "CREATE DATABASE odoo_prod")
    psql(stack, "odoo_prod", f"""
        CREATE TABLE res_partner (id serial PRIMARY KEY, name text NOT NULL, email text,
          is_company boolean NOT NULL DEFAULT false, create_date timestamp NOT NULL);
        CREATE TABLE res_users (id serial PRIMARY KEY, login text UNIQUE NOT NULL,
          partner_id int NOT NULL REFERENCES res_partner(id), active boolean DEFAULT true);
        CREATE TABLE account_move (id serial PRIMARY KEY, name text NOT NULL,
          partner_id int REFERENCES res_partner(id), date date NOT NULL,
          amount_total numeric(16,2) NOT NULL, state text NOT NULL);
        CREATE TABLE account_move_line (id bigserial PRIMARY KEY,
          move_id int NOT NULL REFERENCES account_move(id) ON DELETE CASCADE,
          debit numeric(16,2) NOT NULL, credit numeric(16,2) NOT NULL, name text,
          data jsonb, checksum bytea);
        CREATE INDEX account_move_line_move_id ON account_move_line (move_id);
        CREATE INDEX res_partner_email ON res_partner (lower(email));
        CREATE SEQUENCE ir_sequence_001 START 1000 INCREMENT 5;
        CREATE VIEW account_move_totals AS
          SELECT move_id, sum(debit) AS debit, sum(credit) AS credit
          FROM account_move_line GROUP BY move_id;
        CREATE FUNCTION partner_display(p res_partner) RETURNS text LANGUAGE sql
          AS $$ SELECT p.name || ' <' || coalesce(p.email, '') || '>' $$;
        COMMENT ON TABLE res_partner IS 'Contacts — partenaires';
        INSERT INTO res_partner (name, email, is_company, create_date)
          SELECT 'Partner ' || g || ' ü', 'p' || g || '@example.com', g % 7 = 0,
                 '2024-01-01'::timestamp + g * interval '1 minute'
          FROM generate_series(1, {PARTNERS}) g;
        INSERT INTO res_users (login, partner_id)
          SELECT 'user' || g, g FROM generate_series(1, 500) g;
        INSERT INTO account_move (name, partner_id, date, amount_total, state)
          SELECT 'INV/2024/' || lpad(g::text, 5, '0'), g % {PARTNERS} + 1,
                 '2024-01-01'::date + g % 365, (g % 1000) * 1.25, 'posted'
          FROM generate_series(1, {MOVES}) g;
        INSERT INTO account_move_line (move_id, debit, credit, name, data, checksum)
          SELECT g % {MOVES} + 1, (g % 97) * 1.5, (g % 89) * 1.5, 'line ' || g,
                 jsonb_build_object('n', g, 'tags', jsonb_build_array('a', g % 5)),
                 decode(md5(g::text), 'hex')
          FROM generate_series(1, {LINES}) g;
        SELECT setval('ir_sequence_001', 4242);
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO odoo_readonly;
        GRANT SELECT ON account_move_totals TO odoo_report;
    """)  # fmt: skip


def fingerprint(stack: ComposeStack, database: str) -> dict:
    """Every table's rows (md5 over the ordered rows), sequences, views,
    functions, indexes, privileges, comments and the database's owner."""

    def q(statement: str) -> list[str]:
        return psql(stack, database, statement).splitlines()

    tables = q("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    digest = "count(*) || ' ' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '')"
    rows = {t: q(f"SELECT {digest} FROM public.{t} x") for t in tables}
    return {
        "rows": rows,
        "sequences": q("SELECT sequencename, last_value, increment_by FROM pg_sequences "
                       "WHERE schemaname = 'public' ORDER BY 1"),
        "views": q("SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' "
                   "ORDER BY 1"),
        "functions": q("SELECT proname, prosrc FROM pg_proc "
                       "WHERE pronamespace = 'public'::regnamespace ORDER BY 1"),
        "indexes": q("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                     "ORDER BY 1"),
        "acl": q("SELECT relname, relkind, coalesce(relacl::text, '') FROM pg_class "
                 "WHERE relnamespace = 'public'::regnamespace ORDER BY 1"),
        "comments": q("SELECT coalesce(obj_description(oid), '') FROM pg_class "
                      "WHERE relnamespace = 'public'::regnamespace ORDER BY relname"),
        "owner": q("SELECT pg_get_userbyid(datdba) FROM pg_database "
                   "WHERE datname = current_database()"),
    }  # fmt: skip


def roles(stack: ComposeStack) -> list[str]:
    return psql(stack, "postgres", "SELECT rolname, rolcanlogin, coalesce(rolpassword, '') "
                "FROM pg_authid WHERE rolname LIKE 'odoo%' ORDER BY 1").splitlines()  # fmt: skip


def spool_files(spool: Path) -> list[Path]:
    return [p for p in spool.rglob("*") if p.is_file()] if spool.exists() else []


# -- Round trip ----------------------------------------------------------------


def test_odoo_dump_restore_roundtrip(
    stack: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """The app id as user, trust auth: roles plus one custom-format file per
    database; then rows deleted and changed, objects dropped and created,
    a role dropped and another's password changed, the database dropped;
    the restore brings every bit back, roles included."""
    db = app_info(stack)
    name = db.container.name
    before = {d: fingerprint(stack, d) for d in ("odoo_prod", "postgres")}
    before_roles = roles(stack)
    assert "SCRAM-SHA-256$" in "".join(before_roles)

    dumps = dump_database(docker_client, db, tmp_path / "spool")
    by_name = {d.archive_name: d for d in dumps}
    assert set(by_name) >= {
        f"databases/{name}/_globals.sql",
        f"databases/{name}/odoo_prod.dump",
        f"databases/{name}/postgres.dump",
    }
    globals_dump = by_name[f"databases/{name}/_globals.sql"]
    assert (globals_dump.database, globals_dump.format) == (None, "pg_globals_sql")
    globals_sql = globals_dump.path.read_text()
    assert "CREATE ROLE odoo_report" in globals_sql and "SCRAM-SHA-256$" in globals_sql
    prod = by_name[f"databases/{name}/odoo_prod.dump"]
    assert (prod.database, prod.format, prod.engine) == ("odoo_prod", "pg_custom", "postgres")
    assert prod.server_version.startswith("15.")
    assert prod.path.read_bytes()[:5] == b"PGDMP"
    assert prod.to_json()["archive_name"] == prod.archive_name and "path" not in prod.to_json()
    for dump in dumps:
        data = dump.path.read_bytes()
        assert dump.size == len(data) and dump.sha256 == hashlib.sha256(data).hexdigest()
        assert dump.path.stat().st_mode & 0o777 == 0o600
    report = verify_dump(docker_client, prod)
    assert report["checks"] == ["header", "toc", "data_blocks", "pg_restore_list"]
    assert report["data_blocks"] >= 4 and report["toc_entries"] > report["data_blocks"]

    psql(stack, "odoo_prod", """
        DELETE FROM account_move_line WHERE id % 3 = 0;
        UPDATE res_partner SET name = 'changed' WHERE id <= 100;
        DROP VIEW account_move_totals;
        CREATE TABLE created_later (x int);
        SELECT nextval('ir_sequence_001');
        DROP OWNED BY odoo_readonly;
    """)  # fmt: skip
    psql(stack, "postgres", "DROP ROLE odoo_readonly; ALTER ROLE odoo_report PASSWORD 'other';"
                            "CREATE TABLE postgres_extra (x int)")  # fmt: skip
    assert fingerprint(stack, "odoo_prod") != before["odoo_prod"]
    psql(stack, "postgres", "DROP DATABASE odoo_prod")
    assert roles(stack) != before_roles

    restore_database(docker_client, db, dumps)
    assert {d: fingerprint(stack, d) for d in ("odoo_prod", "postgres")} == before
    assert roles(stack) == before_roles


# -- Failures ------------------------------------------------------------------


def test_unreadable_table_fails_the_dump(
    stack: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """pg_dump exits non-zero (a role that may connect but not read): the
    dump fails with pg_dump's message, and no file of the run is left."""
    psql(stack, "postgres", "CREATE ROLE intruder LOGIN")
    try:
        db = info(stack.container("postgres"), "intruder", None)
        with pytest.raises(DatabaseDumpError) as caught:
            dump_database(docker_client, db, tmp_path / "spool")
    finally:
        psql(stack, "postgres", "DROP ROLE intruder")
    message = str(caught.value)
    assert "odoo_prod" in message and "exited with status 1" in message
    assert "permission denied" in message
    assert spool_files(tmp_path / "spool") == []


@pytest.fixture
def pg_dump_wrapper(stack: ComposeStack) -> Iterator[Callable[[str], None]]:
    """Replace pg_dump in the container by a script, for one test."""
    bindir = "/usr/lib/postgresql/15/bin"
    stack.exec("postgres", ["mv", f"{bindir}/pg_dump", f"{bindir}/pg_dump.real"])

    def install(body: str) -> None:
        # pg_dumpall checks pg_dump's version first: let the real one answer.
        script = (f'#!/bin/sh\ncase "$1" in -V|--version) exec {bindir}/pg_dump.real "$@" ;; esac\n'
                  f"{body}")  # fmt: skip
        stack.exec("postgres", ["sh", "-c", f"cat > {bindir}/pg_dump <<'EOF'\n{script}\nEOF\n"
                                            f"chmod 755 {bindir}/pg_dump"])  # fmt: skip

    try:
        yield install
    finally:
        stack.exec("postgres", ["mv", f"{bindir}/pg_dump.real", f"{bindir}/pg_dump"])


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # pg_dump "succeeds" but its output was cut short.
        ('/usr/lib/postgresql/15/bin/pg_dump.real "$@" | head -c 3000', "truncated or corrupt"),
        ("echo 'pg_dump: something else entirely'", 'no "PGDMP" magic'),
        ("exit 0", "produced an empty dump"),
    ],
)  # fmt: skip
def test_bad_custom_format_output_is_caught_at_dump_time(
    stack: ComposeStack,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    pg_dump_wrapper: Callable[[str], None],
    script: str,
    expected: str,
) -> None:
    pg_dump_wrapper(script)
    with pytest.raises(DatabaseDumpError, match=expected):
        dump_database(docker_client, app_info(stack), tmp_path / "spool")
    assert spool_files(tmp_path / "spool") == []


def test_verify_without_and_with_a_container(
    stack: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """Without a container: a cut file fails the structural walk (which
    `pg_restore --list` alone would not notice: it reads only the TOC). With
    one: a file whose structure is intact but that pg_restore cannot read
    (an unknown encoding in its TOC) fails `pg_restore --list`."""
    psql(stack, "postgres", "CREATE DATABASE verify_me")
    try:
        psql(stack, "verify_me", "CREATE TABLE t AS SELECT g AS n FROM generate_series(1, 5000) g")
        dumps = dump_database(docker_client, app_info(stack), tmp_path / "spool")
    finally:
        psql(stack, "postgres", "DROP DATABASE verify_me")
    [dump] = [d for d in dumps if d.database == "verify_me"]
    data = dump.path.read_bytes()

    cut = tmp_path / "cut.dump"
    cut.write_bytes(data[:-10])
    with pytest.raises(DatabaseDumpError, match="truncated"):
        verify_dump(None, replace(dump, path=cut))
    toc_only = tmp_path / "toc_only.dump"
    toc_only.write_bytes(data[: len(data) // 2])  # the table's data is cut off
    with pytest.raises(DatabaseDumpError, match="truncated"):
        verify_dump(None, replace(dump, path=toc_only))

    odd = tmp_path / "odd.dump"
    odd.write_bytes(data.replace(b"client_encoding = 'UTF8'", b"client_encoding = 'XXX8'", 1))
    assert verify_dump(None, replace(dump, path=odd))["checks"] == ["header", "toc", "data_blocks"]
    with pytest.raises(DatabaseDumpError, match="pg_restore --list cannot read the dump"):
        verify_dump(docker_client, replace(dump, path=odd))
    # A pg_dump newer than our parser: not failed offline (pg_restore of the
    # same version judges it), but this PostgreSQL 15 pg_restore refuses it.
    newer = tmp_path / "newer.dump"
    newer.write_bytes(data[:6] + bytes([99]) + data[7:])
    report = verify_dump(None, replace(dump, path=newer))
    assert report["checks"] == ["header"] and "newer than this checker" in report["note"]
    with pytest.raises(DatabaseDumpError, match="pg_restore --list cannot read the dump"):
        verify_dump(docker_client, replace(dump, path=newer))
    globals_dump = next(d for d in dumps if d.format == "pg_globals_sql")
    cut.write_bytes(globals_dump.path.read_bytes()[:-60])
    with pytest.raises(DatabaseDumpError, match="truncated"):
        verify_dump(None, replace(globals_dump, path=cut))


def test_failed_restore_reports_the_error_and_a_good_one_recovers(
    stack: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    psql(stack, "postgres", "CREATE DATABASE shop_copy")
    psql(stack, "shop_copy", "CREATE TABLE items (id int PRIMARY KEY, label text); "
         "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 999) g")  # fmt: skip
    try:
        db = app_info(stack)
        dumps = [d for d in dump_database(docker_client, db, tmp_path / "spool")
                 if d.database == "shop_copy"]  # fmt: skip
        before = fingerprint(stack, "shop_copy")
        bad = tmp_path / "bad.dump"
        # Same length, so the structure holds; the first id is no integer.
        bad.write_bytes(dumps[0].path.read_bytes().replace(b"1\titem 1\n", b"X\titem 1\n", 1))
        verify_dump(None, replace(dumps[0], path=bad))
        started = time.monotonic()
        with pytest.raises(DatabaseRestoreError, match="invalid input syntax for type integer"):
            restore_database(docker_client, db, [replace(dumps[0], path=bad)])
        assert time.monotonic() - started < 20
        restore_database(docker_client, db, dumps)
        assert fingerprint(stack, "shop_copy") == before
    finally:
        psql(stack, "postgres", "DROP DATABASE IF EXISTS shop_copy")


ROW_SECRET = "SECRET-ROW-7f3a91c2"


def test_failed_restore_shows_the_error_line_and_no_row_data(
    stack: ComposeStack,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pg_restore failing on a row (its value in the ERROR line, in CONTEXT,
    or in DETAIL's "Key (email)=(...)") and psql failing on a role line
    (echoed in LINE 1): the error keeps the first ERROR line, without the
    values, and no log record holds them either."""
    caplog.set_level(logging.DEBUG)
    psql(stack, "postgres", "CREATE DATABASE vault_copy")
    psql(stack, "vault_copy", "CREATE TABLE people (n int, email text UNIQUE, note text); "
         f"INSERT INTO people VALUES (12345, '{ROW_SECRET}-1', 'alice'), "
         f"(2, '{ROW_SECRET}-2', 'bob')")  # fmt: skip
    try:
        db = app_info(stack)
        dumps = dump_database(docker_client, db, tmp_path / "spool")
        [dump] = [d for d in dumps if d.database == "vault_copy"]
        [roles_dump] = [d for d in dumps if d.format == "pg_globals_sql"]
        data = dump.path.read_bytes()
        # Same lengths, so the file's structure holds: a row whose first
        # column is no integer, and a duplicate where a unique index follows.
        not_a_number = tmp_path / "not_a_number.dump"
        not_a_number.write_bytes(
            data.replace(f"12345\t{ROW_SECRET}-1".encode(), f"{ROW_SECRET}-1\t12345".encode())
        )
        duplicate = tmp_path / "duplicate.dump"
        duplicate.write_bytes(data.replace(f"{ROW_SECRET}-2".encode(), f"{ROW_SECRET}-1".encode()))
        bad_role = tmp_path / "bad_role.sql"
        bad_role.write_bytes(roles_dump.path.read_bytes().replace(
            b"\n--\n-- PostgreSQL database cluster dump complete",
            f"\nALTER ROLE odoo_report VALID UNTIL '{ROW_SECRET}-r';\n"
            "--\n-- PostgreSQL database cluster dump complete".encode(),
        ))  # fmt: skip
        cases = [
            (replace(dump, path=not_a_number), "pg_restore: error: COPY failed for table "
             '"people": ERROR:  invalid input syntax for type integer: "..."'),
            (replace(dump, path=duplicate), "pg_restore: error: could not execute query: ERROR:  "
             'could not create unique index "people_email_key"'),
            (replace(roles_dump, path=bad_role), "ERROR:  22007: invalid input syntax for type "
             'timestamp with time zone: "..."'),
        ]  # fmt: skip
        for bad, expected in cases:
            with pytest.raises(DatabaseRestoreError) as caught:
                restore_database(docker_client, db, [bad])
            message = str(caught.value)
            assert message.endswith(expected)
            for leaked in (ROW_SECRET, "alice", "DETAIL", "CONTEXT", "LINE 1", "Key ("):
                assert leaked not in message
        assert ROW_SECRET not in caplog.text
        restore_database(docker_client, db, [dump])
        assert psql(stack, "vault_copy", "SELECT count(*) FROM people") == "2\n"
    finally:
        psql(stack, "postgres", "DROP DATABASE IF EXISTS vault_copy")


def test_stopped_container_fails_clearly(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    container = docker_client.containers.create(
        APP_IMAGE, ["sleep", "3600"], labels={TEST_LABEL: "1"}, name=f"dumps-{secrets.token_hex(4)}"
    )
    try:
        container.start()
        container.stop(timeout=0)
        db = info(container, "odoo", "pw-secret-2")
        with pytest.raises(DatabaseDumpError, match="is not running"):
            dump_database(docker_client, db, tmp_path / "spool")
        with pytest.raises(DatabaseRestoreError, match="exited"):
            wait_until_ready(docker_client, db, timeout=30)
    finally:
        container.remove(force=True)
    assert spool_files(tmp_path / "spool") == []


# -- Passwords -----------------------------------------------------------------


@pytest.fixture
def password_auth(stack: ComposeStack) -> Iterator[str]:
    """For one test, the server asks every connection, local ones too, for a
    SCRAM password (as bitnami-style images do); the app user gets one.
    Put back to trust afterwards."""
    password = f"app-{secrets.token_hex(8)}"
    hba = "/var/lib/postgresql/data/pg_hba.conf"
    psql(stack, "postgres", f"ALTER ROLE {stack.project} PASSWORD '{password}'")
    stack.exec("postgres", ["sed", "-i", "s/trust$/scram-sha-256/", hba])
    psql(stack, "postgres", "SELECT pg_reload_conf()")
    try:
        yield password
    finally:
        stack.exec("postgres", ["sed", "-i", "s/scram-sha-256$/trust/", hba])
        psql(stack, "postgres", "SELECT pg_reload_conf()", password=password)


PROC_ARGV = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\"; echo; done 2>/dev/null"


def test_password_auth_secret_stays_out_of_argv_and_errors(
    stack: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path, password_auth: str
) -> None:
    db = app_info(stack, password_auth)
    container = stack.container("postgres")
    snapshots: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            snapshots.append(stack.exec("postgres", ["sh", "-c", PROC_ARGV]))
            snapshots.append(repr(docker_client.api.top(container.id)["Processes"]))
            container.reload()
            for exec_id in container.attrs.get("ExecIDs") or []:
                with contextlib.suppress(docker.errors.NotFound):
                    snapshots.append(repr(docker_client.api.exec_inspect(exec_id)))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        dumps = dump_database(docker_client, db, tmp_path / "spool")
    finally:
        done.set()
        watcher.join()
    assert {d.database for d in dumps} >= {None, "odoo_prod", "postgres"}
    seen = "\n".join(snapshots)
    assert "pg_dump --format=custom" in seen
    assert password_auth not in seen

    wrong = f"wrong-{secrets.token_hex(6)}"
    bad = app_info(stack, wrong)
    with pytest.raises(DatabaseDumpError, match="password authentication failed") as caught:
        dump_database(docker_client, bad, tmp_path / "spool2")
    assert wrong not in str(caught.value) and password_auth not in str(caught.value)
    assert spool_files(tmp_path / "spool2") == []
    started = time.monotonic()
    with pytest.raises(DatabaseRestoreError, match="password authentication failed"):
        wait_until_ready(docker_client, bad, timeout=60)
    assert time.monotonic() - started < 15
    wait_until_ready(docker_client, db, timeout=30)


def test_owner_that_is_not_superuser(
    stack: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path, password_auth: str
) -> None:
    """A managed-style owner role with a password: it dumps the databases it
    may connect to, its roles without passwords (pg_authid is superuser
    only), and restores its database in place (it may not create one)."""
    admin = stack.project
    psql(stack, "postgres", "CREATE ROLE shop_owner LOGIN PASSWORD 'shop-Pa55'; "
                            "REVOKE CONNECT ON DATABASE odoo_prod FROM PUBLIC",
         password=password_auth)  # fmt: skip
    psql(stack, "postgres", "CREATE DATABASE shop OWNER shop_owner", password=password_auth)
    try:
        psql(stack, "shop", "CREATE TABLE orders (id serial PRIMARY KEY, total numeric); "
                            "INSERT INTO orders (total) "
                            "SELECT g * 0.5 FROM generate_series(1, 3000) g; "
                            "CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100",
             user="shop_owner", password="shop-Pa55")  # fmt: skip
        db = info(stack.container("postgres"), "shop_owner", "shop-Pa55")
        dumps = dump_database(docker_client, db, tmp_path / "spool")
        assert {d.database for d in dumps} == {None, "postgres", "shop"}  # not odoo_prod
        globals_sql = next(d for d in dumps if d.database is None).path.read_text()
        assert "CREATE ROLE shop_owner" in globals_sql and "SCRAM-SHA-256$" not in globals_sql

        before = psql(stack, "shop", "SELECT count(*), sum(total) FROM orders",
                      user="shop_owner", password="shop-Pa55")  # fmt: skip
        psql(stack, "shop", "DELETE FROM orders WHERE id > 10; DROP VIEW big_orders; "
                            "CREATE TABLE leftover (x int)",
             user="shop_owner", password="shop-Pa55")  # fmt: skip
        notes: list[str] = []
        restore_database(docker_client, db, [d for d in dumps if d.database != "postgres"],
                         lambda p: notes.append(p.detail))  # fmt: skip
        after = psql(stack, "shop", "SELECT count(*), sum(total) FROM orders; "
                                    "SELECT string_agg(tablename, ',' ORDER BY tablename) "
                                    "FROM pg_tables WHERE schemaname = 'public'; "
                                    "SELECT count(*) FROM big_orders",
                     user="shop_owner", password="shop-Pa55")  # fmt: skip
        assert after.splitlines()[0] == before.strip()
        assert after.splitlines()[1] == "orders"
        assert any("_globals skipped" in note for note in notes)
    finally:
        for statement in (
            "DROP DATABASE IF EXISTS shop",
            "DROP ROLE IF EXISTS shop_owner",
            "GRANT CONNECT ON DATABASE odoo_prod TO PUBLIC",
        ):
            psql(stack, "postgres", statement, user=admin, password=password_auth)  # fmt: skip


def test_ready_when_the_server_answers(
    stack: ComposeStack, docker_client: docker.DockerClient
) -> None:
    wait_until_ready(docker_client, app_info(stack), timeout=30)
