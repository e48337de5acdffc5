"""Helpers for the drill tests: seeded data, source counts, and a snapshot
whose dump lost a table's rows but whose archive is rebuilt consistently."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import docker
import zstandard

from engine.dumps.pg_format import (
    BLK_BLOBS,
    BLK_DATA,
    _Cursor,
    _read_header,
    _read_toc,
    _skip_chunks,
)
from snapshots.models import Snapshot
from tests.stacks import ComposeStack

# Values that a naive row counter would get wrong: quotes, the row separator,
# backslashes and a newline inside strings.
TRICKY = ["it''s", "a),(b", "back\\\\slash", "line\\nbreak", "plain"]


def seed_mariadb(stack: ComposeStack, rows: int = 40) -> None:
    values = ",".join(f"({i}, '{TRICKY[i % len(TRICKY)]} {i}')" for i in range(rows))
    sql = (
        "CREATE TABLE wp_posts (id INT PRIMARY KEY, title TEXT);"
        f"INSERT INTO wp_posts VALUES {values};"
        "CREATE TABLE wp_options (k VARCHAR(64) PRIMARY KEY, v TEXT);"
        "INSERT INTO wp_options VALUES ('siteurl', 'http://x'), ('blogname', 'b),(log');"
        "CREATE TABLE wp_empty (id INT);"
    )
    mysql(stack, "wordpress", sql)


def mysql(stack: ComposeStack, database: str, sql: str) -> str:
    password = stack.services[0].environment["MYSQL_ROOT_PASSWORD"]
    return stack.exec("mariadb", ["mariadb", "-uroot", "-N", "-B", database, "-e", sql],
                      {"MYSQL_PWD": password})  # fmt: skip


def mariadb_counts(stack: ComposeStack, database: str = "wordpress") -> dict[str, int]:
    tables = mysql(stack, database, "SHOW TABLES").split()
    return {t: int(mysql(stack, database, f"SELECT COUNT(*) FROM `{t}`")) for t in tables}


def seed_postgres(stack: ComposeStack, rows: int = 30) -> None:
    sql = (
        "CREATE TABLE res_partner (id int PRIMARY KEY, name text);"
        f"INSERT INTO res_partner SELECT g, 'p' || g || E'\\nx' FROM generate_series(1, {rows}) g;"
        "CREATE SCHEMA extra; CREATE TABLE extra.lines (id int);"
        "INSERT INTO extra.lines SELECT generate_series(1, 7);"
        "CREATE TABLE empty_one (id int);"
    )
    psql(stack, sql)


def psql(stack: ComposeStack, sql: str) -> str:
    return stack.exec("postgres", ["psql", "-U", stack.project, "-d", "postgres", "-At",
                                   "-c", sql])  # fmt: skip


def postgres_counts(stack: ComposeStack) -> dict[str, int]:
    rows = psql(stack, "SELECT schemaname || '.' || relname FROM pg_stat_user_tables").split()
    return {t: int(psql(stack, f"SELECT count(*) FROM {t}")) for t in rows}


def container_states(client: docker.DockerClient, stack: ComposeStack) -> dict[str, tuple]:
    """(id, StartedAt, Status) of each of the app's containers."""
    states = {}
    for name, container in stack.containers.items():
        attrs = client.api.inspect_container(container.id)
        states[name] = (attrs["Id"], attrs["State"]["StartedAt"], attrs["State"]["Status"])
    return states


def drill_objects(client: docker.DockerClient, drill_id: str | None = None) -> list[str]:
    """What is labelled backup-drill (=DRILL_ID when given) on the host."""
    selector = {"label": "backup-drill" if drill_id is None else f"backup-drill={drill_id}"}
    return [
        *(f"container {c.name}" for c in client.containers.list(all=True, filters=selector)),
        *(f"volume {v.name}" for v in client.volumes.list(filters=selector)),
        *(f"network {n.name}" for n in client.networks.list(filters=selector)),
    ]


def drop_rows_in_archive(archive: Path, table: str, keep: int) -> None:
    """Rewrite ARCHIVE (tar.zst, not encrypted) so that the SQL dump keeps
    only KEEP rows of TABLE's INSERT (see edit_dumps_in_archive). The result
    passes deep verify and the dump's structural check; only a restore can tell."""
    marker = b"INSERT INTO `" + table.encode()

    def edit(data: bytes) -> bytes | None:
        return _keep_rows(data, table, keep) if marker in data else None

    edit_dumps_in_archive(archive, edit)


def sleep_in_dump(archive: Path, seconds: int) -> None:
    """Rewrite ARCHIVE so that restoring its SQL dump first sleeps SECONDS
    (a statement of the dump like any other: the dump stays structurally
    valid, its row counts unchanged): a restore that lasts as long as wanted."""

    def edit(data: bytes) -> bytes | None:
        at = data.find(b"\nCREATE TABLE `")
        if at < 0:
            return None
        return data[: at + 1] + f"SELECT SLEEP({seconds});\n".encode() + data[at + 1 :]

    edit_dumps_in_archive(archive, edit)


def edit_dumps_in_archive(archive: Path, edit: Callable[[bytes], bytes | None]) -> None:
    """Rewrite ARCHIVE (tar.zst, not encrypted): each database dump member
    becomes EDIT(its bytes) (None: unchanged), then every checksum is made
    to agree again: the dump's entry in backup.json (size, sha256; its
    row_counts stay as recorded) and manifest.json (the stored file's own
    checksum: restamp)."""
    raw = zstandard.ZstdDecompressor().stream_reader(archive.open("rb")).read()
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for info in tar:
            data = tar.extractfile(info).read() if info.isfile() else None
            members.append((info, data))
    changed: dict[str, bytes] = {}
    for info, data in members:
        if info.name.startswith("databases/") and data:
            new = edit(data)
            if new is not None:
                changed[info.name] = new

    assert changed, "no dump of the archive was edited"
    backup = json.loads(next(d for i, d in members if i.name == "backup.json"))
    for entry in backup["databases"]:
        if entry["archive_name"] in changed:
            new = changed[entry["archive_name"]]
            entry["size"], entry["sha256"] = len(new), hashlib.sha256(new).hexdigest()
    changed["backup.json"] = json.dumps(backup).encode()
    manifest = json.loads(next(d for i, d in members if i.name == "manifest.json"))
    _fix_manifest(manifest, changed)
    changed["manifest.json"] = json.dumps(manifest).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if info.name in changed:
                data = changed[info.name]
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    archive.write_bytes(zstandard.ZstdCompressor().compress(out.getvalue()))


def restamp(snapshot: Snapshot, archive: Path) -> None:
    """SNAPSHOT's recorded SHA-256 and size, and ARCHIVE's sidecar, made to
    match the rewritten ARCHIVE: it passes deep verify again."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    Snapshot.objects.filter(pk=snapshot.pk).update(sha256=digest, size_bytes=archive.stat().st_size)
    Path(f"{archive}.sha256").write_text(f"{digest}  {archive.name}\n")


def _keep_rows(data: bytes, table: str, keep: int) -> bytes:
    """DATA with TABLE's INSERT cut to its first KEEP rows, in either layout
    (one line per statement, or mariadb-dump's one line per row)."""
    head = b"INSERT INTO `" + table.encode() + b"` VALUES"
    lines = data.split(b"\n")
    i = next(n for n, line in enumerate(lines) if line.startswith(head))
    if lines[i] == head:  # one row per line, the last ends with ");"
        end = next(n for n in range(i + 1, len(lines)) if lines[n].endswith(b");"))
        kept = lines[i + 1 : i + 1 + keep]
        kept[-1] = kept[-1].rstrip(b",") + b";"
        return b"\n".join([*lines[: i + 1], *kept, *lines[end + 1 :]])
    rows = lines[i][len(head) + 1 :].rstrip(b";").split(b"),(")
    lines[i] = head + b" " + b"),(".join(rows[:keep]) + b");"
    return b"\n".join(lines)


def drop_pg_rows_in_archive(archive: Path, table: str, keep: int) -> None:
    """Like drop_rows_in_archive, for the pg_dump custom-format dump that
    holds TABLE ("schema.table"): its data block keeps the first KEEP COPY
    rows. pg_dump wrote the file to a pipe (no data offsets in the TOC), so
    a shorter block leaves the file as valid as pg_restore reads it."""

    def edit(data: bytes) -> bytes | None:
        return _pg_keep_rows(data, table, keep) if data.startswith(b"PGDMP") else None

    edit_dumps_in_archive(archive, edit)


def _pg_keep_rows(data: bytes, table: str, keep: int) -> bytes | None:
    c = _Cursor(io.BytesIO(data), len(data))
    version, _db, _server = _read_header(c)
    names: dict[int, tuple[str, str, str]] = {}
    _read_toc(c, version[:2], names)
    out, start, found = bytearray(data[: c.pos]), c.pos, False
    while not c.at_end():
        block_type, dump_id = c.byte(), c.int()
        desc, schema, name = names.get(dump_id, ("", "", ""))
        if block_type == BLK_DATA and desc == "TABLE DATA" and f"{schema}.{name}" == table:
            head = data[start : c.pos]
            rows = bytearray()
            while (length := c.int()) != 0:
                rows += c.take(length)
            lines = bytes(rows).split(b"\n")
            end = lines.index(b"\\.")  # COPY's end-of-data line
            kept = b"\n".join([*lines[:keep], *lines[end:]])
            out += head + _pg_int(len(kept), c.int_size) + kept + _pg_int(0, c.int_size)
            found = True
        else:
            if block_type == BLK_BLOBS:
                while c.int() != 0:
                    _skip_chunks(c)
            else:
                _skip_chunks(c)
            out += data[start : c.pos]
        start = c.pos
    return bytes(out) if found else None


def _pg_int(value: int, size: int) -> bytes:
    """An integer as pg_dump writes it: a sign byte, then SIZE bytes little-endian."""
    return bytes([1 if value < 0 else 0]) + abs(value).to_bytes(size, "little")


def _fix_manifest(manifest: dict, changed: dict[str, bytes]) -> None:
    """Every entry naming a changed member gets its new size and sha256,
    whatever the manifest's layout (a list of files, or a dict by path)."""

    def visit(node: object) -> None:
        if isinstance(node, dict):
            path = node.get("path") or node.get("name")
            if path in changed and "sha256" in node:
                node["sha256"] = hashlib.sha256(changed[path]).hexdigest()
                if "size" in node:
                    node["size"] = len(changed[path])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(manifest)
