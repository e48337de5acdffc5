"""MongoDB dumps and restores, tested up to the process boundary.

No MongoDB server or Database Tools can run on this machine (no image, no
registry), so the real `mongodump`/`mongorestore`/`mongod`/`mongosh` are
replaced by STAND-IN shell scripts in a busybox container (localtest/app:1).
The stand-ins record exactly what the engine gives them (argv, environment,
the --config file's mode, owner and content, stdin) and answer as the
documented tools do (a gzipped archive on stdout, exit statuses, stderr).

What this proves: the exact command lines (no secret in them), the
credentials file (0600, created before anything is written, YAML that
parses back to the exact password, removed afterwards, also on failure),
the environment, stdout/stdin streaming, failure handling and scrubbing,
and the offline archive check (gzip CRC, magic number, BSON framing).

What it does NOT prove (no server here): that a real mongodump accepts
these options and authenticates with `--config` against a real mongod, that
a real archive passes our structural check, that `mongorestore --drop`
restores users and collections as documented, and the real output of
`mongod --version` and `mongosh --eval` in the official images."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import secrets
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import docker
import pytest
import yaml
from docker.models.containers import Container

from engine.dumps import (
    DatabaseRestoreError,
    DumpFile,
    dump_database,
    restore_database,
    verify_dump,
    wait_until_ready,
)
from engine.dumps.mongo import verify_mongo_archive, yaml_quote
from engine.errors import DatabaseDumpError
from engine.inventory import ContainerInfo, DatabaseCredentials, DatabaseInfo
from engine.secret import Secret
from tests.images import APP_IMAGE
from tests.stacks import TEST_LABEL

# A password with everything YAML or a shell could trip over.
NASTY_PASSWORD = "s3cr\"et\\:# {pw} 'ü🙂\u2028\tend\n"
PLAIN_PASSWORD = "plainSecret42"  # the form a tool would echo back verbatim
CONFIG_PATH = re.compile(r"^/tmp/\.backup-service-[0-9a-f]{16}\.yaml$")
TOOLS_VERSION = "mongodump version: 100.9.4\ngit version: 5d6fd6e\nGo version: go1.21.5\n"


# -- A stand-in mongodump archive ----------------------------------------------


def bson(doc: dict[str, str | bool]) -> bytes:
    body = b""
    for key, value in doc.items():
        name = key.encode() + b"\0"
        if isinstance(value, bool):
            body += b"\x08" + name + (b"\x01" if value else b"\x00")
        else:
            text = value.encode() + b"\0"
            body += b"\x02" + name + len(text).to_bytes(4, "little") + text
    return (len(body) + 5).to_bytes(4, "little") + body + b"\0"


TERMINATOR = b"\xff\xff\xff\xff"


def archive_bytes(documents: int = 3) -> bytes:
    """The layout of mongo-tools' archive package: magic, header, prelude of
    collections, terminator, then namespace blocks ending with an EOF header."""
    ns = {"db": "shop", "collection": "orders"}
    parts = [
        (0x8199E26D).to_bytes(4, "little"),
        bson({"version": "0.1", "server_version": "7.0.5", "tool_version": "100.9.4"}),
        bson({**ns, "metadata": "{}", "size": "0"}),
        TERMINATOR,
        bson({**ns, "EOF": False}),
        *(bson({"item": f"order {i}"}) for i in range(documents)),
        TERMINATOR,
        bson({**ns, "EOF": True}),
        TERMINATOR,
    ]
    return b"".join(parts)


ARCHIVE_GZ = gzip.compress(archive_bytes())


# -- Stand-in tools --------------------------------------------------------------

RECORD = """
record() {  # record NAME ARGS...: argv, environment and the --config file
  name=$1; shift
  : > /fake/$name.args
  for a in "$@"; do printf '%s\\n' "$a" >> /fake/$name.args; done
  env > /fake/$name.env
  for a in "$@"; do case "$a" in --config=*)
    f="${a#--config=}"
    stat -c '%a %u' "$f" > /fake/$name.config.stat
    cat "$f" > /fake/$name.config ;;
  esac; done
}
"""
FAKE_MONGODUMP = f"""#!/bin/sh
{RECORD}
case "$1" in --version) cat /fake/tools-version; exit 0 ;; esac
record dump "$@"
case "$(cat /fake/mode)" in
  ok) cat /fake/archive.gz ;;
  fail) echo "Failed: error connecting to db server: $(cat /fake/dump.config)" >&2; exit 1 ;;
  cut) head -c 60 /fake/archive.gz ;;
  garbage) echo "not an archive" | gzip ;;
esac
"""
FAKE_MONGORESTORE = f"""#!/bin/sh
{RECORD}
ROW=row-secret-7f3a@example.com
case "$1" in --version) cat /fake/tools-version; exit 0 ;; esac
record restore "$@"
cat > /fake/restored.archive.gz
case "$(cat /fake/mode)" in
  fail) printf '%s\t%s\n' 2024-05-01T12:00:00.456+0000 \
    "Failed: shop.users: error restoring from archive ($(cat /fake/restore.config)): E11000 \
duplicate key error collection: shop.users index: email_1 dup key: {{ email: \"$ROW\" }}" >&2
        exit 1 ;;
esac
"""
FAKE_MONGOD = '#!/bin/sh\necho "db version v7.0.5"\necho "Build Info: {}"\n'
FAKE_MONGOSH = '#!/bin/sh\nprintf "%s\\n" "$@" > /fake/shell.args\nexit "$(cat /fake/shell-exit)"\n'


def put_files(container: Container, files: dict[str, bytes], mode: int = 0o755) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    assert container.put_archive("/", buf.getvalue())


@pytest.fixture(scope="module")
def mongo(docker_client: docker.DockerClient) -> Iterator[Container]:
    container = docker_client.containers.create(
        APP_IMAGE, ["sleep", "3600"], labels={TEST_LABEL: "1"}, name=f"mongo-{secrets.token_hex(4)}"
    )
    try:
        container.start()
        put_files(container, {
            "/bin/mongodump": FAKE_MONGODUMP.encode(),
            "/bin/mongorestore": FAKE_MONGORESTORE.encode(),
            "/bin/mongod": FAKE_MONGOD.encode(),
            "/bin/mongosh": FAKE_MONGOSH.encode(),
        })  # fmt: skip
        yield container
    finally:
        container.remove(force=True)


@pytest.fixture
def fake(mongo: Container) -> Container:
    """The stand-ins, reset: archive ready, tools version current, mode ok."""
    mongo.exec_run(["sh", "-c", "rm -rf /fake /tmp/.backup-service-*"])
    put_files(mongo, {
        "/fake/archive.gz": ARCHIVE_GZ,
        "/fake/tools-version": TOOLS_VERSION.encode(),
        "/fake/mode": b"ok",
        "/fake/shell-exit": b"0",
    }, mode=0o644)  # fmt: skip
    return mongo


def set_mode(container: Container, name: str, value: str) -> None:
    put_files(container, {f"/fake/{name}": value.encode()}, mode=0o644)


def read(container: Container, path: str) -> str | None:
    result = container.exec_run(["cat", path])
    return result.output.decode() if result.exit_code == 0 else None


def leftover_configs(container: Container) -> str:
    return container.exec_run(
        ["sh", "-c", "ls -a /tmp | grep backup-service || true"]
    ).output.decode()


def mongo_info(container: Container, password: str | None) -> DatabaseInfo:
    user = "root" if password else ""
    return DatabaseInfo(
        ContainerInfo(container.id, container.name, "mongo", "mongo:7", "running"),
        "mongo",
        DatabaseCredentials(user, Secret(password) if password else None),
    )


# -- Dumps -----------------------------------------------------------------------


@pytest.mark.docker
def test_dump_with_auth_passes_the_password_only_in_a_0600_config_file(
    fake: Container, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    dumps = dump_database(docker_client, mongo_info(fake, NASTY_PASSWORD), tmp_path / "spool")

    args = read(fake, "/fake/dump.args").splitlines()
    assert args[:5] == [
        "--archive",
        "--gzip",
        "--username=root",
        "--authenticationDatabase=admin",
        args[4],
    ]
    assert len(args) == 5 and CONFIG_PATH.match(args[4].removeprefix("--config="))
    assert read(fake, "/fake/dump.config.stat").split() == ["600", "0"]
    assert yaml.safe_load(read(fake, "/fake/dump.config")) == {"password": NASTY_PASSWORD}
    env = read(fake, "/fake/dump.env")
    for secret in (NASTY_PASSWORD, "s3cr", "ü🙂"):
        assert secret not in "\n".join(args) and secret not in env
    assert leftover_configs(fake) == ""  # removed once the tool finished

    [dump] = dumps
    assert dump.path.read_bytes() == ARCHIVE_GZ
    assert dump.to_json() == {
        "container": fake.name,
        "engine": "mongo",
        "server_version": "7.0.5",
        "database": None,
        "format": "mongo_archive_gz",
        "size": len(ARCHIVE_GZ),
        "sha256": hashlib.sha256(ARCHIVE_GZ).hexdigest(),
        "archive_name": f"databases/{fake.name}/all.archive.gz",
    }
    report = verify_dump(None, dump)
    assert report["checks"] == ["gzip", "magic", "structure"] and report["bson_documents"] == 7


@pytest.mark.docker
def test_dump_without_auth_has_no_credentials_at_all(
    fake: Container, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    dump_database(docker_client, mongo_info(fake, None), tmp_path / "spool")
    assert read(fake, "/fake/dump.args").splitlines() == ["--archive", "--gzip"]
    assert read(fake, "/fake/dump.config") is None


@pytest.mark.docker
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("fail", "mongodump exited with status 1: Failed: error connecting"),
        ("cut", "truncated"),
        ("garbage", "magic number missing"),
    ],
)
def test_dump_failures_leave_nothing_and_no_secret(
    fake: Container, docker_client: docker.DockerClient, tmp_path: Path, mode: str, expected: str
) -> None:
    set_mode(fake, "mode", mode)
    with pytest.raises(DatabaseDumpError, match=expected) as caught:
        dump_database(docker_client, mongo_info(fake, PLAIN_PASSWORD), tmp_path / "spool")
    assert PLAIN_PASSWORD not in str(caught.value)
    if mode == "fail":  # the tool echoed its config file: scrubbed
        assert 'password: "***"' in str(caught.value)
    assert leftover_configs(fake) == ""
    assert not any(p.is_file() for p in (tmp_path / "spool").rglob("*"))


@pytest.mark.docker
def test_tools_too_old_for_config_are_refused(
    fake: Container, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    """Before 100.3.0 the only way was --password on the command line."""
    set_mode(fake, "tools-version", "mongodump version: r4.2.8\n")
    with pytest.raises(DatabaseDumpError, match="too old to read a password from --config"):
        dump_database(docker_client, mongo_info(fake, PLAIN_PASSWORD), tmp_path / "spool")
    assert read(fake, "/fake/dump.args") is None  # never started to dump
    # Without a password there is nothing to hide: old tools are fine.
    dump_database(docker_client, mongo_info(fake, None), tmp_path / "spool")


@pytest.mark.docker
def test_missing_mongodump_is_reported(
    fake: Container, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    fake.exec_run(["mv", "/bin/mongodump", "/bin/mongodump.off"])
    try:
        with pytest.raises(DatabaseDumpError, match="mongodump is not available"):
            dump_database(docker_client, mongo_info(fake, None), tmp_path / "spool")
    finally:
        fake.exec_run(["mv", "/bin/mongodump.off", "/bin/mongodump"])


# -- Restore -----------------------------------------------------------------------


def spooled_dump(tmp_path: Path, container: Container) -> DumpFile:
    path = tmp_path / "all.archive.gz"
    path.write_bytes(ARCHIVE_GZ)
    return DumpFile(
        container.name, "mongo", "7.0.5", None, "mongo_archive_gz", path, len(ARCHIVE_GZ),
        hashlib.sha256(ARCHIVE_GZ).hexdigest(), f"databases/{container.name}/all.archive.gz",
    )  # fmt: skip


@pytest.mark.docker
def test_restore_streams_the_archive_with_drop(
    fake: Container, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    dump = spooled_dump(tmp_path, fake)
    restore_database(docker_client, mongo_info(fake, NASTY_PASSWORD), [dump])
    args = read(fake, "/fake/restore.args").splitlines()
    assert args[:6] == [
        "--archive",
        "--gzip",
        "--drop",
        "--stopOnError",
        "--username=root",
        "--authenticationDatabase=admin",
    ]
    assert len(args) == 7 and CONFIG_PATH.match(args[6].removeprefix("--config="))
    assert yaml.safe_load(read(fake, "/fake/restore.config")) == {"password": NASTY_PASSWORD}
    assert read(fake, "/fake/restore.config.stat").split() == ["600", "0"]
    restored = fake.exec_run(["sha256sum", "/fake/restored.archive.gz"]).output.decode()
    assert restored.split()[0] == dump.sha256
    assert leftover_configs(fake) == ""


@pytest.mark.docker
def test_restore_failure_is_reported_without_the_secret(
    fake: Container, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    set_mode(fake, "mode", "fail")
    dump = spooled_dump(tmp_path, fake)
    with pytest.raises(DatabaseRestoreError, match="E11000 duplicate key") as caught:
        restore_database(docker_client, mongo_info(fake, PLAIN_PASSWORD), [dump])
    assert PLAIN_PASSWORD not in str(caught.value)
    # The document the tool printed is data: only its place is shown.
    assert str(caught.value).endswith("index: email_1 dup key: {...}")
    assert "row-secret" not in str(caught.value) and "2024-05-01" not in str(caught.value)
    assert leftover_configs(fake) == ""
    with pytest.raises(DatabaseRestoreError, match="cannot restore a sql dump"):
        restore_database(docker_client, mongo_info(fake, None), [replace(dump, format="sql")])


@pytest.mark.docker
def test_wait_until_ready_pings_with_the_shell(
    fake: Container, docker_client: docker.DockerClient
) -> None:
    wait_until_ready(docker_client, mongo_info(fake, PLAIN_PASSWORD), timeout=10)
    args = read(fake, "/fake/shell.args").splitlines()
    assert args == ["--quiet", "--norc", "--eval", "db.adminCommand({ping: 1}).ok"]
    set_mode(fake, "shell-exit", "1")
    with pytest.raises(DatabaseRestoreError, match="did not accept connections within"):
        wait_until_ready(docker_client, mongo_info(fake, None), timeout=1)


# -- Offline checks ------------------------------------------------------------------


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "a.archive.gz"
    path.write_bytes(data)
    return path


def test_verify_accepts_a_well_formed_archive(tmp_path: Path) -> None:
    report = verify_mongo_archive(write(tmp_path, gzip.compress(archive_bytes(1000))))
    assert report["bson_documents"] == 1004
    assert report["uncompressed_size"] == len(archive_bytes(1000))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (gzip.compress(archive_bytes())[:-9], "truncated"),  # gzip stream cut
        (gzip.compress(archive_bytes()[:-4]), "does not end with a terminator"),
        (gzip.compress(archive_bytes()[:-7]), "truncated"),  # cut inside a document
        (gzip.compress(b"\x00" * 4 + archive_bytes()[4:]), "magic number missing"),
        (gzip.compress(archive_bytes()[:4] + b"\x01\x00\x00\x00" + archive_bytes()[8:]),
         "BSON length"),
        (gzip.compress(archive_bytes()) + b"junk", "data after its gzip stream"),
        (archive_bytes(), "not valid gzip"),
        (gzip.compress(b""), "empty"),
    ],
)  # fmt: skip
def test_verify_rejects_broken_archives(tmp_path: Path, data: bytes, expected: str) -> None:
    with pytest.raises(DatabaseDumpError, match=expected):
        verify_mongo_archive(write(tmp_path, data))


def test_yaml_quote_round_trips_any_password() -> None:
    for password in (NASTY_PASSWORD, "", "plain", "\x00\x7f\u0085\ufeff", "𝄞" * 3):
        assert yaml.safe_load(f"password: {yaml_quote(password)}") == {"password": password}
