"""Block deltas on a real stack: MariaDB's InnoDB files rewritten in place
by row updates, and large app files appended to, rewritten in place,
truncated and grown past the threshold; incrementals encrypted to an age
recipient only (no identity on the worker). Each incremental stores those
files as small deltas; the restore of every point of the chain gives back
its files and rows; by hand, with age, zstd, tar and the archives' own
apply_deltas.py, the chain's raw InnoDB files start a MariaDB that holds the
rows of the last point."""

from __future__ import annotations

import contextlib
import random
import secrets
import subprocess
import tarfile
import time
from pathlib import Path

import docker
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from engine.age import generate_identity
from engine.incremental.delta import BLOCK_SIZE
from snapshots.models import Run, Snapshot
from tests.backup_helpers import archive_path, backup_now
from tests.engine.chaingen import DELETED
from tests.engine.treegen import snapshot as tree_snapshot
from tests.images import MARIADB_IMAGE
from tests.incremental_helpers import incremental_dirs
from tests.stacks import ComposeStack, mariadb_sql, wait_for_mariadb

__all__ = ["incremental_dirs"]  # the autouse fixture, imported

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MIB = 1024 * 1024
CHECKSUM = "SELECT COUNT(*), SUM(CRC32(title)) FROM posts"


def _rewrite(path: Path, pages: int, rng: random.Random) -> None:
    with open(path, "r+b") as handle:
        for page in rng.sample(range(path.stat().st_size // BLOCK_SIZE), pages):
            handle.seek(page * BLOCK_SIZE)
            handle.write(rng.randbytes(BLOCK_SIZE))


def _update_rows(stack: ComposeStack, rng: random.Random, count: int) -> None:
    ids = ",".join(str(rng.randrange(20_000)) for _ in range(count))
    mariadb_sql(stack, f"UPDATE posts SET title = MD5(RAND()) WHERE id IN ({ids})")


def _backup(stack: ComposeStack) -> Snapshot:
    snapshot = backup_now(stack.project, "--incremental", "--consistency", "stop")
    assert snapshot.status == Snapshot.Status.COMPLETED, snapshot.error
    return snapshot


def _decrypted(archive: Path, key: Path) -> str:
    return f"age -d -i {key} {archive} | zstd -dc"


def _member_sizes(archive: Path, key: Path) -> dict[str, int]:
    proc = subprocess.Popen(["bash", "-o", "pipefail", "-c", _decrypted(archive, key)],
                            stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        sizes = {member.name: member.size for member in tar}
    assert proc.wait() == 0
    return sizes


def _restore(app_id: str, backup_id: str) -> Run:
    with contextlib.suppress(CommandError):
        call_command("backup", "restore", app_id, backup_id)
    return Run.objects.filter(operation="restore", app_id=app_id).latest("created_at")


def test_deltas_of_innodb_and_app_files_restore_every_point(
    wordpress: ComposeStack, docker_client: docker.DockerClient, settings, tmp_path: Path
) -> None:
    identity, recipient = generate_identity()
    settings.BACKUP_AGE_RECIPIENTS = [recipient]
    settings.BACKUP_AGE_IDENTITY_FILE = ""  # the worker makes the backups with no identity
    key = tmp_path / "key.txt"
    key.write_text(identity + "\n")
    rng = random.Random(13)
    files = Path(docker_client.volumes.get(wordpress.volume("wordpress")).attrs["Mountpoint"])
    mariadb_sql(
        wordpress, "CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(200)) ENGINE=InnoDB"
    )
    # ~5 MB of rows (MariaDB's Sequence engine makes them server-side).
    mariadb_sql(wordpress, "INSERT INTO posts SELECT seq, REPEAT(MD5(seq), 6) FROM seq_0_to_19999")
    (files / "app.log").write_bytes(rng.randbytes(2 * MIB))
    (files / "site.db").write_bytes(rng.randbytes(4 * MIB))
    (files / "cache.bin").write_bytes(rng.randbytes(3 * MIB))
    (files / "growing.bin").write_bytes(rng.randbytes(MIB // 2))
    points = [(_backup(wordpress), tree_snapshot(files), mariadb_sql(wordpress, CHECKSUM))]
    # 1: rows updated in place, an append, page rewrites, a file grown past 1 MiB.
    _update_rows(wordpress, rng, 200)
    with open(files / "app.log", "ab") as handle:
        handle.write(rng.randbytes(50_000))
    _rewrite(files / "site.db", 4, rng)
    with open(files / "growing.bin", "ab") as handle:
        handle.write(rng.randbytes(MIB))
    points.append((_backup(wordpress), tree_snapshot(files), mariadb_sql(wordpress, CHECKSUM)))
    # 2: more rows, a truncation, more rewrites, the grown file rewritten.
    _update_rows(wordpress, rng, 200)
    with open(files / "cache.bin", "r+b") as handle:
        handle.truncate(MIB + 5 * BLOCK_SIZE + 3)
    _rewrite(files / "site.db", 2, rng)
    _rewrite(files / "growing.bin", 1, rng)
    points.append((_backup(wordpress), tree_snapshot(files), mariadb_sql(wordpress, CHECKSUM)))
    assert [p[0].kind for p in points] == ["full", "incremental", "incremental"]
    assert all(p[0].encrypted for p in points)
    assert len({p[2] for p in points}) == 3  # the rows differ at each point

    archives = [archive_path(p[0], Path(django_settings.BACKUP_ROOT)) for p in points]
    first, second = _member_sizes(archives[1], key), _member_sizes(archives[2], key)
    files_volume = wordpress.volume("wordpress")
    deltas = {name: size for name, size in first.items() if name.startswith("deltas/")}
    # The InnoDB tablespace: 200 updated rows touch at most 200 of its pages.
    table = next(name for name in deltas if name.endswith("/wordpress/posts.ibd"))
    assert deltas[table] <= 104 + 200 * (BLOCK_SIZE + 8)
    assert f"deltas/{files_volume}/site.db" in deltas and "apply_deltas.py" in first
    assert deltas[f"deltas/{files_volume}/site.db"] <= 104 + 4 * (BLOCK_SIZE + 8)
    assert deltas[f"deltas/{files_volume}/app.log"] <= 104 + 50_000 + 2 * (BLOCK_SIZE + 8)
    assert f"volumes/{files_volume}/growing.bin" in first  # no digests in the full: whole
    assert second[f"deltas/{files_volume}/cache.bin"] <= 104 + BLOCK_SIZE + 8
    assert second[f"deltas/{files_volume}/growing.bin"] <= 104 + BLOCK_SIZE + 8
    incremental_bytes = sum(second.values())
    full_bytes = sum(_member_sizes(archives[0], key).values())
    assert incremental_bytes < full_bytes / 10
    # The report says what was written (the deltas), not the files they stand for.
    last = points[2][0]
    assert last.bytes_written <= incremental_bytes < last.bytes_full / 10, (
        last.bytes_written, incremental_bytes, last.bytes_full
    )  # fmt: skip

    _by_hand(wordpress, docker_client, archives, key, tmp_path, files_volume, points[2])

    settings.BACKUP_AGE_IDENTITY_FILE = str(key)
    last = points[2][0]
    call_command("backup", "verify", last.backup_id)
    call_command("backup", "verify", last.backup_id, "--deep")
    deep = Run.objects.filter(snapshot=last, operation="verify").latest("created_at").result
    assert deep["valid"] and deep["chain"] == [p[0].backup_id for p in points], deep
    (files / "site.db").write_bytes(b"vandalised")
    for snapshot, tree, rows in reversed(points):
        run = _restore(wordpress.project, snapshot.backup_id)
        assert run.state == Run.State.COMPLETED, run.error
        assert tree_snapshot(files) == tree, snapshot.backup_id
        assert mariadb_sql(wordpress, CHECKSUM) == rows, snapshot.backup_id


def _by_hand(
    stack: ComposeStack, client: docker.DockerClient, archives: list[Path], key: Path,
    tmp_path: Path, files_volume: str, point: tuple[Snapshot, dict, str],
) -> None:  # fmt: skip
    """README's procedure with age, zstd, tar and python3; then a MariaDB
    started on the chain's raw InnoDB files answers with the point's rows."""
    dest = tmp_path / "by-hand"
    dest.mkdir()
    script = "".join(
        f"{_decrypted(a, key)} | tar -xO manifest.json | python3 -c '{DELETED}'"
        f" | (cd {dest} && xargs -0r rm -rf --)\n"
        f"{_decrypted(a, key)} | tar -x --numeric-owner -p --sparse -C {dest}\n"
        f"if [ -f {dest}/apply_deltas.py ]; then python3 {dest}/apply_deltas.py {dest}"
        f" >/dev/null && rm {dest}/apply_deltas.py; fi\n"
        for a in archives
    )
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True)
    assert not (dest / "deltas").exists()
    assert tree_snapshot(dest / "volumes" / files_volume) == point[1]
    password = stack.services[0].environment["MYSQL_ROOT_PASSWORD"]
    data = dest / "volumes" / stack.volume("mysql_data")
    name = f"deltas-by-hand-{secrets.token_hex(4)}"
    container = client.containers.run(
        MARIADB_IMAGE, detach=True, name=name, labels={"docker-app-backup.test": "deltas"},
        volumes={str(data): {"bind": "/var/lib/mysql", "mode": "rw"}},
        environment={"MYSQL_ROOT_PASSWORD": password}, network_mode="none",  # docker exec only
    )  # fmt: skip
    try:
        wait_for_mariadb(container, password)
        deadline = time.monotonic() + 60
        while True:
            result = container.exec_run(
                ["mariadb", "-uroot", "-N", "wordpress", "-e", CHECKSUM],
                environment={"MYSQL_PWD": password},
            )
            if result.exit_code == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert result.exit_code == 0, result.output
        assert result.output.decode() == point[2]
    finally:
        container.remove(force=True, v=True)
