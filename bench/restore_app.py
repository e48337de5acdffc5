"""The restore benchmark's data: a volume-like tree (many small files, some
large ones), and a realistic app holding it: the WordPress-like Compose stack
of tests/stacks.py (an app container with a files volume, MariaDB with its
data volume), the tree in the files volume, owned by www-data, and a MariaDB
table big enough for a dump of >= 100 MB, generated inside the server
(tests/realistic_data.py: one INSERT ... SELECT over a sequence, not rows
sent over the exec socket)."""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MB = 1_000_000
WWW_DATA = 33  # the files' owner, as in the WordPress image: restored with chown
TABLE = "bench_rows"
ROW_BYTES = 600  # ~530 bytes of dump per row: 200,000 rows are a ~106 MB dump
# Random bytes mapped onto a small alphabet: text-like, compresses about 2:1.
_TEXT = bytes((b"etaoinshrdlcumwfgypbvkjxqz   \n,.<>=/;{}ETAOINSHR0123456789" * 5)[:256])


def _content(rng: random.Random, size: int, compressible: bool) -> bytes:
    data = rng.randbytes(size)
    return data.translate(_TEXT) if compressible else data


def make_tree(
    root: Path, total_bytes: int, small_files: int, seed: int = 7, owner: int | None = None
) -> tuple[int, int]:
    """SMALL_FILES files of 0.5-64 KB (log-uniform, 100 per directory, 70 %
    text-like: a CMS's code, thumbnails), then 32-192 MB files up to about
    TOTAL_BYTES, half random (media), half text-like (logs, exports).
    OWNER: uid and gid of everything. Returns (files, bytes)."""
    rng = random.Random(seed)
    files = written = 0
    dirs: list[Path] = []
    while files < small_files:
        folder = root / "wp-content" / f"d{files // 100:04d}"
        if files % 100 == 0:
            folder.mkdir(parents=True)
            dirs.append(folder)
        size = int(2 ** rng.uniform(9, 16))
        path = folder / f"f{files:06d}.php"
        path.write_bytes(_content(rng, size, rng.random() < 0.7))
        if owner is not None:
            os.chown(path, owner, owner)
        files += 1
        written += size
    big = root / "big"
    big.mkdir(parents=True, exist_ok=True)
    dirs.append(big)
    index = 0
    while written < total_bytes:
        size = min(rng.randint(32, 192) * MB, max(total_bytes - written, MB))
        path = big / f"blob{index:03d}.bin"
        with open(path, "wb") as handle:
            for done in range(0, size, 8 * MB):
                handle.write(_content(rng, min(8 * MB, size - done), index % 2 == 1))
        if owner is not None:
            os.chown(path, owner, owner)
        index += 1
        files += 1
        written += size
    if owner is not None:
        for folder in [*dirs, root / "wp-content", root]:
            os.chown(folder, owner, owner)
    return files, written


@dataclass
class App:
    project: str
    files_root: Path  # the files volume's mountpoint
    db_container: str
    root_password_env: dict[str, str]  # MYSQL_PWD, for the anchor's `mariadb < dump`
    files: int
    bytes: int


@contextlib.contextmanager
def realistic_app(workdir: Path, total_bytes: int, small_files: int, rows: int) -> Iterator[App]:
    """The stack up, its files volume filled with make_tree, ROWS rows in
    MariaDB; everything the stack created is removed afterwards."""
    import docker

    from tests.realistic_data import load_rows
    from tests.stacks import random_project, wait_for_mariadb, wordpress_stack

    client = docker.from_env()
    stack = wordpress_stack(client, random_project("benchrestore"), workdir / "project")
    try:
        stack.up()
        password = stack.services[0].environment["MYSQL_ROOT_PASSWORD"]
        wait_for_mariadb(stack.container("mariadb"), password)
        volume = client.volumes.get(stack.volume("wordpress"))
        root = Path(volume.attrs["Mountpoint"])
        files, written = make_tree(root, total_bytes, small_files, owner=WWW_DATA)
        load_rows(stack, TABLE, rows, ROW_BYTES)
        yield App(
            project=stack.project, files_root=root, db_container=stack.container("mariadb").name,
            root_password_env={"MYSQL_PWD": password}, files=files, bytes=written,
        )  # fmt: skip
    finally:
        stack.remove()
