"""MariaDB dumps and restores against a real MariaDB 10.11 in a Compose-like
WordPress stack. The stack's credentials reach the container only through
the compose `env_file: .env` (the container environment is all the engine
has, as in production); DatabaseInfo is built here from that environment,
independently of discovery.

One stack serves the module (deploying one takes seconds); each test owns
the databases it changes."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from engine.dumps import (
    DatabaseRestoreError,
    DumpFile,
    dump_database,
    restore_database,
    verify_dump,
    wait_until_ready,
)
from engine.errors import DatabaseDumpError
from engine.inventory import ContainerInfo, DatabaseCredentials, DatabaseInfo
from engine.secret import Secret
from tests.images import APP_IMAGE
from tests.stacks import (
    TEST_LABEL,
    ComposeStack,
    random_project,
    wait_for_mariadb,
    wait_until,
    wordpress_stack,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

POSTS = 100_000  # wp_site.wp_posts; with postmeta (2 per post) well over 100k rows


# -- Fixtures and helpers ------------------------------------------------------


@pytest.fixture(scope="module")
def stack(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeStack]:
    project = random_project("wordpress")
    stack = wordpress_stack(docker_client, project, tmp_path_factory.mktemp(project) / project)
    try:
        stack.up()
        wait_for_mariadb(stack.container("mariadb"), root_password(stack))
        seed_wp_site(stack)
        yield stack
    finally:
        stack.remove()


def root_password(stack: ComposeStack) -> str:
    return stack.services[0].environment["MYSQL_ROOT_PASSWORD"]


def container_env(container: Container) -> dict[str, str]:
    container.reload()
    return dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])


def db_info(stack: ComposeStack, user_var: str, password_var: str) -> DatabaseInfo:
    """Credentials as discovery reads them: from the container's environment."""
    container = stack.container("mariadb")
    env = container_env(container)
    user = "root" if user_var == "root" else env[user_var]
    return DatabaseInfo(
        container=ContainerInfo(
            container.id, container.name, "mariadb", "mariadb:10.11", "running"
        ),
        engine="mariadb",
        credentials=DatabaseCredentials(user, Secret(env[password_var]), ("wordpress",)),
    )


def root_info(stack: ComposeStack) -> DatabaseInfo:
    return db_info(stack, "root", "MYSQL_ROOT_PASSWORD")


def app_user_info(stack: ComposeStack) -> DatabaseInfo:
    return db_info(stack, "MYSQL_USER", "MYSQL_PASSWORD")


def sql(stack: ComposeStack, statements: str, user: str = "root", password: str = "") -> str:
    password = password or root_password(stack)
    cmd = [
        "mariadb",
        f"--user={user}",
        "--default-character-set=utf8mb4",
        "-N",
        "-B",
        "-e",
        statements,
    ]
    return stack.exec("mariadb", cmd, {"MYSQL_PWD": password})


def seed_wp_site(stack: ComposeStack) -> None:
    """A WordPress-like database with 100k posts, 200k postmeta, users,
    options, indexes, utf8mb4 text, binary data, a trigger, two routines and
    an event; plus a small second database. Rows are generated server-side."""
    sql(stack, f"""
        CREATE DATABASE wp_site CHARACTER SET utf8mb4;
        USE wp_site;
        CREATE TABLE wp_users (ID BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
          user_login VARCHAR(60) NOT NULL, user_email VARCHAR(100) NOT NULL,
          user_registered DATETIME NOT NULL, KEY user_login_key (user_login)) ENGINE=InnoDB;
        CREATE TABLE wp_posts (ID BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
          post_author BIGINT UNSIGNED NOT NULL, post_date DATETIME NOT NULL,
          post_title TEXT NOT NULL, post_content LONGTEXT NOT NULL,
          post_status VARCHAR(20) NOT NULL DEFAULT 'publish',
          post_type VARCHAR(20) NOT NULL DEFAULT 'post', comment_count BIGINT NOT NULL DEFAULT 0,
          KEY type_status_date (post_type, post_status, post_date, ID),
          KEY post_author (post_author)) ENGINE=InnoDB;
        CREATE TABLE wp_postmeta (meta_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
          post_id BIGINT UNSIGNED NOT NULL, meta_key VARCHAR(255), meta_value LONGTEXT,
          meta_blob BLOB, KEY post_id (post_id), KEY meta_key (meta_key(191))) ENGINE=InnoDB;
        CREATE TABLE wp_options (option_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
          option_name VARCHAR(191) NOT NULL UNIQUE, option_value LONGTEXT NOT NULL,
          autoload VARCHAR(20) NOT NULL DEFAULT 'yes', KEY autoload (autoload)) ENGINE=InnoDB;
        CREATE TABLE wp_post_log (id BIGINT AUTO_INCREMENT PRIMARY KEY,
          post_id BIGINT UNSIGNED NOT NULL, old_status VARCHAR(20)) ENGINE=InnoDB;
        INSERT INTO wp_users (user_login, user_email, user_registered)
          SELECT CONCAT('user', seq), CONCAT('user', seq, '@example.com'),
                 '2024-01-01' + INTERVAL seq MINUTE FROM seq_1_to_1000;
        INSERT INTO wp_posts (post_author, post_date, post_title, post_content, post_status)
          SELECT seq % 1000 + 1, '2024-01-01' + INTERVAL seq MINUTE,
                 CONCAT('Post ', seq, ' — café 🙂'),
                 REPEAT(MD5(seq), 8), IF(seq % 10 = 0, 'draft', 'publish')
          FROM seq_1_to_{POSTS};
        INSERT INTO wp_postmeta (post_id, meta_key, meta_value, meta_blob)
          SELECT seq DIV 2 + 1, IF(seq % 2, '_edit_lock', '_thumbnail_id'), SHA2(seq, 256),
                 UNHEX(SHA2(seq, 256)) FROM seq_0_to_{2 * POSTS - 1};
        INSERT INTO wp_options (option_name, option_value, autoload)
          SELECT CONCAT('option_', seq), REPEAT('x', seq % 200), IF(seq % 3, 'yes', 'no')
          FROM seq_1_to_500;
        CREATE TRIGGER wp_posts_status AFTER UPDATE ON wp_posts FOR EACH ROW
          INSERT INTO wp_post_log (post_id, old_status) VALUES (OLD.ID, OLD.post_status);
        CREATE PROCEDURE wp_count_published(OUT n INT)
          SELECT COUNT(*) INTO n FROM wp_posts WHERE post_status = 'publish';
        CREATE FUNCTION wp_slug(t VARCHAR(200)) RETURNS VARCHAR(200) DETERMINISTIC
          RETURN LOWER(REPLACE(t, ' ', '-'));
        CREATE EVENT wp_cleanup ON SCHEDULE EVERY 1 DAY
          DO DELETE FROM wp_post_log WHERE id < 0;
        CREATE DATABASE analytics;
        CREATE TABLE analytics.visits (id INT PRIMARY KEY, path VARCHAR(100)) ENGINE=InnoDB;
        INSERT INTO analytics.visits SELECT seq, CONCAT('/p/', seq) FROM seq_1_to_2000;
    """)  # fmt: skip


def fingerprint(stack: ComposeStack, database: str, user: str = "root", password: str = "") -> dict:
    """What must survive a dump and restore: every table's rows (CHECKSUM
    TABLE), columns and indexes, triggers, routines and events."""

    def q(statement: str) -> list[str]:
        return sql(stack, statement, user, password).splitlines()

    schema = f"'{database}'"
    tables = q(f"SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {schema} "
               "ORDER BY 1")  # fmt: skip
    checksums = (
        q(f"CHECKSUM TABLE {', '.join(f'`{database}`.`{t}`' for t in tables)} EXTENDED")
        if tables
        else []
    )
    return {
        "tables": tables,
        "checksums": checksums,
        "columns": q("SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM "
                     f"information_schema.COLUMNS WHERE TABLE_SCHEMA = {schema} ORDER BY 1, 2"),
        "indexes": q("SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE FROM "
                     f"information_schema.STATISTICS WHERE TABLE_SCHEMA = {schema} "
                     "ORDER BY 1, 2, 3"),
        "triggers": q("SELECT TRIGGER_NAME, EVENT_MANIPULATION, ACTION_STATEMENT FROM "
                      f"information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {schema} ORDER BY 1"),
        "routines": q("SELECT ROUTINE_NAME, ROUTINE_TYPE, ROUTINE_DEFINITION FROM "
                      f"information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {schema} ORDER BY 1"),
        "events": q("SELECT EVENT_NAME, EVENT_DEFINITION, INTERVAL_VALUE, INTERVAL_FIELD FROM "
                    f"information_schema.EVENTS WHERE EVENT_SCHEMA = {schema} ORDER BY 1"),
    }  # fmt: skip


class PeakRss(threading.Thread):
    """Samples this process's resident memory while a block runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.start_kib = self.peak_kib = self._rss()
        self.stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmRSS:"))
        return int(line.split()[1])

    def run(self) -> None:
        while not self.stop.wait(0.005):
            self.peak_kib = max(self.peak_kib, self._rss())

    def growth_mib(self) -> float:
        return (self.peak_kib - self.start_kib) / 1024


def assert_dump_files(dumps: list[DumpFile], container: str) -> None:
    for dump in dumps:
        data = dump.path.read_bytes()
        assert dump.size == len(data) > 0
        assert dump.sha256 == hashlib.sha256(data).hexdigest()
        assert dump.path.stat().st_mode & 0o777 == 0o600
        assert dump.archive_name == f"databases/{container}/{dump.database}.sql"
        assert data.rstrip().splitlines()[-1].startswith(b"-- Dump completed")
        assert dump.to_json() == {
            "container": container,
            "engine": "mariadb",
            "server_version": dump.server_version,
            "database": dump.database,
            "format": "sql",
            "size": dump.size,
            "sha256": dump.sha256,
            "archive_name": dump.archive_name,
            # Per table, counted from the file itself (engine/dumps/row_counts.py).
            "row_counts": dump.row_counts,
        }
        assert dump.row_counts is not None  # {} for a database without tables
        assert all(isinstance(n, int) for n in dump.row_counts.values())


def spool_files(spool: Path) -> list[Path]:
    return [p for p in spool.rglob("*") if p.is_file()] if spool.exists() else []


# -- Round trips ---------------------------------------------------------------


def test_root_dump_restore_roundtrip(
    stack: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """Root credentials from the env file; every user database in its own
    file; then rows deleted and changed, a table dropped, one created, a
    routine and a whole database dropped; the restore brings back exactly
    what was dumped."""
    env_file = (stack.working_dir / ".env").read_text()
    assert f"MYSQL_ROOT_PASSWORD={root_password(stack)}" in env_file
    assert "env_file: .env" in stack.config_file.read_text()
    db = root_info(stack)
    before = {name: fingerprint(stack, name) for name in ("wp_site", "analytics")}
    assert int(sql(stack, "SELECT COUNT(*) FROM wp_site.wp_posts")) == POSTS

    rss = PeakRss()
    rss.start()
    try:
        dumps = dump_database(docker_client, db, tmp_path / "spool")
    finally:
        rss.stop.set()
        rss.join()

    by_db = {d.database: d for d in dumps}
    assert {"wp_site", "analytics", "wordpress"} <= set(by_db)
    assert not {"mysql", "sys", "information_schema", "performance_schema"} & set(by_db)
    assert_dump_files(dumps, db.container.name)
    assert by_db["wp_site"].server_version.startswith("10.11.")
    # Bounded memory: the dump streams through, it is never held in memory.
    assert by_db["wp_site"].size > 40 << 20
    assert rss.growth_mib() < 24, f"RSS grew {rss.growth_mib():.1f} MiB during the dump"
    for dump in dumps:
        report = verify_dump(docker_client, dump)
        assert report["checks"] == ["header", "trailer"]

    sql(stack, """
        DELETE FROM wp_site.wp_postmeta WHERE post_id % 3 = 0;
        UPDATE wp_site.wp_posts SET post_title = 'changed' WHERE ID <= 500;
        DROP TABLE wp_site.wp_options;
        CREATE TABLE wp_site.wp_created_later (x INT);
        DROP PROCEDURE wp_site.wp_count_published;
        DROP DATABASE analytics;
    """)  # fmt: skip
    assert fingerprint(stack, "wp_site") != before["wp_site"]

    seen: list[str] = []
    restore_database(docker_client, db, dumps, lambda p: seen.append(p.detail))
    after = {name: fingerprint(stack, name) for name in ("wp_site", "analytics")}
    assert after == before
    assert "wp_created_later" not in after["wp_site"]["tables"]
    assert f"{db.container.name}/wp_site" in seen


def test_app_user_only_with_mysqldump_fallback(
    stack: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """Only MYSQL_USER/MYSQL_PASSWORD (no root): the dump holds just the
    databases that user can see, with its trigger, routine and event; the
    restore as that user recreates them. The container has no mariadb-dump
    (as older or Oracle MySQL images), so mysqldump is used."""
    db = app_user_info(stack)
    user, password = db.credentials.user, db.credentials.password.reveal()
    sql(stack, """
        USE wordpress;
        CREATE TABLE wp_comments (comment_ID BIGINT AUTO_INCREMENT PRIMARY KEY,
          comment_post_ID BIGINT NOT NULL, comment_content TEXT, KEY post (comment_post_ID));
        INSERT INTO wp_comments (comment_post_ID, comment_content)
          SELECT seq % 700, CONCAT('comment ', seq, ' ✓') FROM seq_1_to_20000;
        CREATE TABLE wp_comment_log (id INT AUTO_INCREMENT PRIMARY KEY, comment_id BIGINT);
        CREATE TRIGGER wp_comment_ins AFTER INSERT ON wp_comments FOR EACH ROW
          INSERT INTO wp_comment_log (comment_id) VALUES (NEW.comment_ID);
        CREATE FUNCTION wp_comment_total() RETURNS INT READS SQL DATA
          RETURN (SELECT COUNT(*) FROM wp_comments);
        CREATE EVENT wp_comment_purge ON SCHEDULE EVERY 1 HOUR
          DO DELETE FROM wp_comment_log WHERE id < 0;
    """, user, password)  # fmt: skip
    before = fingerprint(stack, "wordpress", user, password)
    assert before["triggers"] and before["routines"] and before["events"]

    hide = (
        "cd /usr/bin && mv mariadb-dump mariadb-dump.real && rm mysqldump && "
        "printf '#!/bin/sh\\ntouch /tmp/mysqldump-used\\nexec /usr/bin/mariadb-dump.real \"$@\"\\n'"
        " > mysqldump && chmod 755 mysqldump"
    )
    unhide = "cd /usr/bin && rm -f mysqldump && mv mariadb-dump.real mariadb-dump && ln -s mariadb-dump mysqldump"  # noqa: E501
    stack.exec("mariadb", ["sh", "-c", hide])
    try:
        dumps = dump_database(docker_client, db, tmp_path / "spool")
        stack.exec("mariadb", ["test", "-e", "/tmp/mysqldump-used"])
    finally:
        stack.exec("mariadb", ["sh", "-c", unhide])
    assert [d.database for d in dumps] == ["wordpress"]  # wp_site, analytics are root's
    assert_dump_files(dumps, db.container.name)

    sql(stack, "DELETE FROM wordpress.wp_comments WHERE comment_ID % 2 = 0; "
               "DROP EVENT wordpress.wp_comment_purge; CREATE TABLE wordpress.extra (x INT)",
        user, password)  # fmt: skip
    assert fingerprint(stack, "wordpress", user, password) != before
    restore_database(docker_client, db, dumps)
    assert fingerprint(stack, "wordpress", user, password) == before


# -- Secrets -------------------------------------------------------------------


PROC_ARGV = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\"; echo; done 2>/dev/null"


def test_password_absent_from_argv_logs_and_inspect(
    stack: ComposeStack,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While a dump runs, every process's argv in the container (/proc and
    `docker top`), the exec's recorded command line (`docker inspect` of the
    exec), the host's processes and our logs are free of the password; the
    dump tool itself is seen, so the watch did happen."""
    db = root_info(stack)
    password = db.credentials.password.reveal()
    container = stack.container("mariadb")
    snapshots: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            snapshots.append(stack.exec("mariadb", ["sh", "-c", PROC_ARGV]))
            top = docker_client.api.top(container.id)
            snapshots.append(repr(top["Processes"]))
            container.reload()
            for exec_id in container.attrs.get("ExecIDs") or []:
                with contextlib.suppress(docker.errors.NotFound):
                    snapshots.append(repr(docker_client.api.exec_inspect(exec_id)))
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):  # the process ended meanwhile
                    snapshots.append(
                        cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    )

    caplog.set_level(logging.DEBUG)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        dumps = dump_database(docker_client, db, tmp_path / "spool")
    finally:
        done.set()
        watcher.join()
    assert dumps
    seen = "\n".join(snapshots)
    assert "mariadb-dump" in seen and "--single-transaction" in seen
    assert password not in seen
    assert password not in caplog.text
    for record in caplog.records:
        assert password not in record.getMessage()


def test_wrong_password_fails_clearly_without_the_secret(
    stack: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    good = root_info(stack)
    wrong = f"wrong-{secrets.token_hex(6)}"
    db = DatabaseInfo(good.container, good.engine, DatabaseCredentials("root", Secret(wrong)))
    with pytest.raises(DatabaseDumpError) as caught:
        dump_database(docker_client, db, tmp_path / "spool")
    message = str(caught.value)
    assert "Access denied" in message and good.container.name in message
    assert wrong not in message and good.credentials.password.reveal() not in message
    assert spool_files(tmp_path / "spool") == []
    # Waiting for a server that refuses the credentials stops at once.
    started = time.monotonic()
    with pytest.raises(DatabaseRestoreError, match="Access denied"):
        wait_until_ready(docker_client, db, timeout=60)
    assert time.monotonic() - started < 15


def test_ready_when_the_server_answers(
    stack: ComposeStack, docker_client: docker.DockerClient
) -> None:
    wait_until_ready(docker_client, root_info(stack), timeout=30)
    wait_until_ready(docker_client, app_user_info(stack), timeout=30)


# -- Failures ------------------------------------------------------------------


def test_tool_failure_fails_the_whole_dump(
    stack: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """mariadb-dump exits non-zero on a view over a dropped table: the dump
    fails with the tool's own message, and no file of the run is left."""
    sql(stack, "CREATE DATABASE zz_broken; CREATE TABLE zz_broken.t (x INT); "
               "CREATE VIEW zz_broken.v AS SELECT x FROM zz_broken.t; "
               "DROP TABLE zz_broken.t")  # fmt: skip
    try:
        with pytest.raises(DatabaseDumpError) as caught:
            dump_database(docker_client, root_info(stack), tmp_path / "spool")
    finally:
        sql(stack, "DROP DATABASE zz_broken")
    message = str(caught.value)
    assert "zz_broken" in message and "exited with status" in message
    assert "references invalid table" in message
    assert spool_files(tmp_path / "spool") == []


def test_truncated_dump_is_detected(
    stack: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    [dump] = dump_database(docker_client, app_user_info(stack), tmp_path / "spool")
    verify_dump(None, dump)
    data = dump.path.read_bytes()
    cut = tmp_path / "cut.sql"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatabaseDumpError, match="truncated"):
        verify_dump(None, replace(dump, path=cut))
    cut.write_bytes(b"SELECT 1;\n" + data[-200:])
    with pytest.raises(DatabaseDumpError, match="no dump header"):
        verify_dump(None, replace(dump, path=cut))
    cut.unlink()
    with pytest.raises(DatabaseDumpError, match="missing"):
        verify_dump(None, replace(dump, path=cut))


def test_failed_restore_reports_the_server_error(
    stack: ComposeStack, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    db = app_user_info(stack)
    [dump] = dump_database(docker_client, db, tmp_path / "spool")
    broken = tmp_path / "broken.sql"
    broken.write_bytes(b"CREATE TABBLE oops (x INT);\n" + dump.path.read_bytes())
    started = time.monotonic()
    with pytest.raises(DatabaseRestoreError) as caught:
        restore_database(docker_client, db, [replace(dump, path=broken)])
    # The client stops at the first error with most of its stdin unread: we
    # must notice at once, not block feeding it.
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "SQL syntax" in message and "exited with status 1" in message
    assert db.credentials.password.reveal() not in message
    restore_database(docker_client, db, [dump])  # the good dump still restores


ROW_SECRET = "SECRET-ROW-7f3a91c2"


def test_failed_restore_shows_the_error_line_and_no_row_data(
    stack: ComposeStack,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dump whose INSERT breaks on a row: the client echoes the whole
    statement (kilobytes of rows) and the rest of it after "near '": the
    error names the server's code and line, and holds none of the rows."""
    caplog.set_level(logging.DEBUG)
    db = app_user_info(stack)
    rows = ",".join(f"({i}, '{ROW_SECRET}-{i} alice{i}@example.com {'z' * 2000}')"
                    for i in range(1, 6))  # fmt: skip
    sql(stack, f"CREATE TABLE wordpress.vault (id INT PRIMARY KEY, note TEXT); "
               f"INSERT INTO wordpress.vault VALUES {rows}")  # fmt: skip
    try:
        [dump] = dump_database(docker_client, db, tmp_path / "spool")
        text = dump.path.read_text()
        assert text.count(f"{ROW_SECRET}-3") == 1
        broken = tmp_path / "broken.sql"
        # A syntax error in the INSERT (mariadb-dump writes a row per line).
        broken.write_text(text.replace("),\n(3,", "),\n(3,,", 1))
        insert = "INSERT INTO `vault` VALUES"
        line = next(n for n, x in enumerate(broken.read_text().splitlines(), 1) if insert in x)
        with pytest.raises(DatabaseRestoreError) as caught:
            restore_database(docker_client, db, [replace(dump, path=broken)])
        message = str(caught.value)
        server_line = message.split(": mariadb exited with status 1: ", 1)[1]
        assert server_line.startswith(f"ERROR 1064 (42000) at line {line}: You have an error")
        assert len(server_line) <= 300
        for leaked in (ROW_SECRET, "alice", "z" * 20, "INSERT INTO", "near '"):
            assert leaked not in message
            assert leaked not in caplog.text
        restore_database(docker_client, db, [dump])  # the good dump still restores
        assert sql(stack, "SELECT COUNT(*) FROM wordpress.vault").strip() == "5"
    finally:
        sql(stack, "DROP TABLE IF EXISTS wordpress.vault")


@pytest.fixture
def app_container(docker_client: docker.DockerClient) -> Iterator[Container]:
    """A busybox container owned by one test (stand-in for odd containers)."""
    container = docker_client.containers.create(
        APP_IMAGE, ["sleep", "3600"], labels={TEST_LABEL: "1"}, name=f"dumps-{secrets.token_hex(4)}"
    )
    try:
        container.start()
        yield container
    finally:
        container.remove(force=True)


FAKE_PASSWORD = "pw-secret-1"


def fake_info(container: Container, password: str = FAKE_PASSWORD) -> DatabaseInfo:
    return DatabaseInfo(
        ContainerInfo(container.id, container.name, "db", APP_IMAGE, "running"),
        "mariadb",
        DatabaseCredentials("root", Secret(password)),
    )


def test_stopped_container_fails_clearly(
    app_container: Container, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    app_container.stop(timeout=0)
    db = fake_info(app_container)
    with pytest.raises(DatabaseDumpError, match="is not running"):
        dump_database(docker_client, db, tmp_path / "spool")
    with pytest.raises(DatabaseRestoreError, match="exited"):
        wait_until_ready(docker_client, db, timeout=30)
    assert spool_files(tmp_path / "spool") == []


# Fake MariaDB tools in a busybox container: what real tools do only when
# something is badly wrong (exit 0 with nothing or half a dump), on demand.
FAKE_CLIENT = """#!/bin/sh
case "$*" in
  *--version*) echo "mariadb from 11.4.2-MariaDB, client 15.2" ;;
  *VERSION*SCHEMATA*) echo "11.4.2-MariaDB-fake"; echo 73686F70; echo 6D7973716C ;;
  *) exit 1 ;;
esac
"""
FAKE_DUMP = """#!/bin/sh
case "$*" in *--version*) echo "mariadb-dump from 11.4.2-MariaDB"; exit 0 ;; esac
case "$(cat /fake/mode)" in
  empty) exit 0 ;;
  cut) printf -- '-- MariaDB dump 10.19\\nCREATE TABLE t (x INT);\\nINSERT INTO t VALUES (1' ;;
  fail) echo "mariadb-dump: Got error: 2013: Lost connection (password $MYSQL_PWD)" >&2; exit 2 ;;
  stuck) yes "INSERT INTO t VALUES (1);" | head -c 8400000; exec sleep 300 ;;
esac
"""


def install(container: Container, files: dict[str, str]) -> None:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    assert container.put_archive("/", buf.getvalue())


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("empty", "produced an empty dump"),
        ("cut", 'truncated \\(no "-- Dump completed" trailer\\)'),
        ("fail", "exited with status 2: mariadb-dump: Got error: 2013"),
    ],
)
def test_dump_tool_misbehaving_exit_zero_or_not(
    app_container: Container,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    mode: str,
    expected: str,
) -> None:
    install(app_container, {"/bin/mariadb": FAKE_CLIENT, "/bin/mariadb-dump": FAKE_DUMP,
                            "/fake/mode": mode})  # fmt: skip
    db = fake_info(app_container)
    with pytest.raises(DatabaseDumpError, match=expected) as caught:
        dump_database(docker_client, db, tmp_path / "spool")
    assert "pw-secret-1" not in str(caught.value)
    if mode == "fail":
        assert "(password ***)" in str(caught.value)  # the tool's stderr, scrubbed
    assert spool_files(tmp_path / "spool") == []


def test_no_dump_tool_in_the_container(
    app_container: Container, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    install(app_container, {"/bin/mariadb": FAKE_CLIENT})
    with pytest.raises(DatabaseDumpError, match="none of mariadb-dump, mysqldump found"):
        dump_database(docker_client, fake_info(app_container), tmp_path / "spool")
    assert not os.listdir(tmp_path) or spool_files(tmp_path / "spool") == []


def test_abandoned_dump_is_killed_in_the_container(
    app_container: Container, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """When our side gives up mid-dump (here the progress callback raises,
    as a task's time limit would), the dump tool must not live on inside the
    database container holding its transaction, even while it is not
    writing (here: 9 MB, then waiting as on a lock)."""
    install(app_container, {"/bin/mariadb": FAKE_CLIENT, "/bin/mariadb-dump": FAKE_DUMP,
                            "/fake/mode": "stuck"})  # fmt: skip

    def stuck() -> bool:
        return any(
            p[-1] == "sleep 300" for p in docker_client.api.top(app_container.id)["Processes"]
        )

    def give_up(progress: object) -> None:
        # Called at 8 MiB: wait for the tool to sit silent, then give up.
        wait_until(stuck, 10, "the stand-in dump tool to wait")
        raise TimeoutError("time limit")

    with pytest.raises(TimeoutError):
        dump_database(docker_client, fake_info(app_container), tmp_path / "spool", give_up)
    assert not stuck()
    assert spool_files(tmp_path / "spool") == []


# -- The exec stream, shared by every engine -------------------------------------


class _Chunked:
    """A reader handing out at most STEP bytes per read, as a socket may."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.pos = data, step, 0

    def read1(self, size: int) -> bytes:
        piece = self.data[self.pos : self.pos + min(size, self.step)]
        self.pos += len(piece)
        return piece


def _frame(kind: int, payload: bytes) -> bytes:
    return bytes([kind, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def test_docker_stream_frames_survive_any_split() -> None:
    """Frame headers and payloads cut anywhere by the network still give
    stdout and stderr back exactly; a stream cut inside a frame is an error."""
    from engine.dumps.exec_stream import ExecError, _frames

    stream = _frame(1, b"hello") + _frame(2, b"err!") + _frame(1, b"") + _frame(1, b"x" * 300)
    for step in range(1, len(stream) + 1):
        out = {1: b"", 2: b""}
        for kind, piece in _frames(_Chunked(stream, step), "tool"):
            out[kind] += piece
        assert out == {1: b"hello" + b"x" * 300, 2: b"err!"}, step
    with pytest.raises(ExecError, match="connection to the Docker engine lost"):
        list(_frames(_Chunked(stream[:-3], 7), "tool"))
