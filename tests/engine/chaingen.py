"""Chains of archives for the incremental tests: a backup of a tree as one
volume with its index kept (full or incremental), and one change of every
kind to a tree made by treegen.make_tree."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO

from engine.archive.manifest import Manifest
from engine.archive.writer import ArchiveWriter
from engine.compression import open_compressor, open_decompressor
from engine.incremental.changes import ParentState
from engine.incremental.index import IndexHeader, IndexWriter, index_path

FULL, INCR, INCR2 = (
    "backup_20260105_103000_aaaaaa", "backup_20260105_110000_bbbbbb",
    "backup_20260105_120000_cccccc",
)  # fmt: skip
VOLUME = "wp_data"


def backup(
    src: Path, out_dir: Path, index_dir: Path, backup_id: str, parent_id: str | None = None
) -> Manifest:
    """An archive of SRC as volume VOLUME, its index kept in INDEX_DIR; an
    incremental when PARENT_ID is given."""
    parent = None
    if parent_id is not None:
        parent = ParentState.from_index(index_path(index_dir, "wp", parent_id), parent_id)
    kind = "full" if parent is None else "incremental"
    index = IndexWriter(index_dir, "wp", IndexHeader(backup_id, parent_id, kind))
    manifest = Manifest(backup_id=backup_id, kind=kind, parent_backup_id=parent_id)  # type: ignore[arg-type]
    out = io.BytesIO()
    compressor = open_compressor(out, "zstd")
    writer = ArchiveWriter(compressor, manifest, index=index, parent=parent)
    parent_sha256 = sha256_of(out_dir / f"{parent_id}.tar.zst") if parent_id else None
    writer.add_backup_json({
        "app_id": "wp", "backup_id": backup_id, "kind": kind, "parent_backup_id": parent_id,
        "parent_sha256": parent_sha256, "volumes": [{"name": VOLUME}],
    })  # fmt: skip
    writer.add_volume(VOLUME, src)
    if parent is not None:
        manifest.deleted = parent.deleted()
    writer.close()
    compressor.close()
    index.commit()
    (out_dir / f"{backup_id}.tar.zst").write_bytes(out.getvalue())
    return manifest


def tar_x(archive: Path, dest: Path) -> None:
    subprocess.run(
        f"zstd -dc {archive} | tar -x --numeric-owner -p --sparse -C {dest}",
        shell=True, check=True,
    )  # fmt: skip


# README's loop: each archive in chain order, its deleted paths removed first,
# its block deltas applied after (by the script an incremental holds).
DELETED = (
    'import json,sys; sys.stdout.buffer.write(b"\\0".join(p.encode("utf-8", "surrogateescape")'
    ' for p in json.load(sys.stdin)["deleted"]))'
)
BY_HAND = """
for f in {archives}; do
  zstd -dc "$f" | tar -xO manifest.json | python3 -c '{deleted}' \\
    | (cd {dest} && xargs -0r rm -rf --)
  zstd -dc "$f" | tar -x --numeric-owner -p --sparse -C {dest}
  if [ -f {dest}/apply_deltas.py ]; then
    python3 {dest}/apply_deltas.py {dest} >/dev/null && rm {dest}/apply_deltas.py
  fi
done
"""


def restore_by_hand(out_dir: Path, chain: list[str], dest: Path) -> Path:
    dest.mkdir()
    archives = " ".join(str(out_dir / f"{backup_id}.tar.zst") for backup_id in chain)
    script = BY_HAND.format(archives=archives, dest=dest, deleted=DELETED)
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], check=True)
    return dest / "volumes" / VOLUME


def mutate(root: Path) -> tuple[set[str], set[str]]:
    """One change of every kind; returns the names the incremental is
    expected to write as files, and those it is expected to list as deleted.
    (A hardlinked inode is stored under the first of its names in walk order.)"""
    written: set[str] = set()
    deleted: set[str] = set()
    (root / "index.php").write_text("<?php echo 'edited';\n")  # edited (keeps its hardlink)
    written.add("hardlink-to-index")
    with open(root / "run.sh", "a") as handle:  # appended
        handle.write("echo appended\n")
    written.add("run.sh")
    with open(root / "sparse-middle.img", "r+b") as handle:  # truncated
        handle.truncate(1000)
    written.add("sparse-middle.img")
    (root / "secret.key").unlink()  # deleted
    deleted.add("secret.key")
    latin1 = os.fsdecode(b"latin1-\xe9t\xe9")  # a name that is no UTF-8
    (root / latin1).unlink()
    deleted.add(latin1)
    os.rename(root / "-dash", root / "renamed")  # renamed
    deleted.add("-dash")
    written.add("renamed")
    os.chmod(root / "spaces and 'quotes'.txt", 0o640)  # mode
    written.add("spaces and 'quotes'.txt")
    os.chown(root / "new\nline", 1234, 1234)  # owner
    written.add("new\nline")
    os.link(root / "ünïcødé-файл.txt", root / "zz-new-hardlink")  # new hardlink
    written.add("zz-new-hardlink")  # the inode's ctime moved: written again
    deleted.add("ünïcødé-файл.txt")  # a file before, now a hardlink to zz-new-hardlink
    os.unlink(root / "relative-link")  # symlink retargeted
    os.symlink("run.sh", root / "relative-link")
    (root / ("x" * 200)).unlink()  # file replaced by a directory
    (root / ("x" * 200)).mkdir()
    (root / ("x" * 200) / "inside.txt").write_text("now a directory")
    deleted.add("x" * 200)
    written.add(f"{'x' * 200}/inside.txt")
    shutil.rmtree(root / "empty-dir")  # directory replaced by a file
    (root / "empty-dir").write_text("now a file")
    deleted.add("empty-dir")
    written.add("empty-dir")
    # Rewritten in place with size and mtime put back: only ctime tells.
    photo = root / "content" / "uploads" / "photo.jpg"
    before = photo.stat()
    with open(photo, "r+b") as handle:
        handle.write(b"\xff" * 16)
    os.utime(photo, ns=(before.st_atime_ns, before.st_mtime_ns))
    written.add("content/uploads/photo.jpg")
    return written, deleted


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def opener(path: Path) -> Callable[[], AbstractContextManager[BinaryIO]]:
    """Opens the zstd archive at PATH as a tar stream, as restore reads it."""

    @contextmanager
    def open_tar() -> BinaryIO:  # type: ignore[misc]
        with open(path, "rb") as raw:
            yield open_decompressor(raw, "zstd")

    return open_tar
