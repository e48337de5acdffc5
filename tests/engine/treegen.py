"""Builds a volume-like tree with every kind of metadata a backup must keep,
and snapshots a tree's metadata for comparison after a round trip."""

from __future__ import annotations

import os
import stat
from pathlib import Path

ODD_NAMES = ["ünïcødé-файл.txt", "spaces and 'quotes'.txt", "new\nline", "-dash", "x" * 200]


def make_tree(root: Path) -> None:
    """A tree as a real app volume may hold it (run as root: owners vary)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.php").write_text("<?php echo 'hello';\n")
    uploads = root / "content" / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "photo.jpg").write_bytes(os.urandom(200_000))
    os.chown(uploads / "photo.jpg", 33, 33)  # www-data, as WordPress writes it
    os.chown(uploads, 33, 33)
    shared = root / "shared"
    shared.mkdir()
    os.chmod(shared, 0o2775)  # setgid dir: new files inherit the group
    os.chown(shared, 1000, 2000)
    (root / "empty-dir").mkdir()
    os.chmod(root / "empty-dir", 0o700)
    (root / "secret.key").write_text("k")
    os.chmod(root / "secret.key", 0o600)
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o4755)
    os.symlink("index.php", root / "relative-link")
    os.symlink("/etc/passwd", root / "absolute-link")  # kept as is, never followed
    os.symlink("missing-target", root / "dangling-link")
    os.link(root / "index.php", root / "hardlink-to-index")
    os.link(uploads / "photo.jpg", shared / "photo-hardlink.jpg")
    for name in ODD_NAMES:
        (root / name).write_text(name)
    (root / os.fsdecode(b"latin1-\xe9t\xe9")).write_text("not utf-8 name")
    with open(root / "sparse.img", "wb") as handle:
        handle.seek(50 * 1024 * 1024)
        handle.write(b"end")
    with open(root / "sparse-middle.img", "wb") as handle:
        handle.write(b"start")
        handle.seek(8 * 1024 * 1024)
        handle.write(b"middle")
        handle.truncate(20 * 1024 * 1024)
    os.utime(root / "index.php", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    os.utime(root / "absolute-link", ns=(1_500_000_000_000_000_000,) * 2, follow_symlinks=False)


def snapshot(root: Path) -> dict[str, tuple]:
    """relpath -> (type, mode, uid, gid, mtime µs, size, content/target, link group)."""
    result: dict[str, tuple] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                payload: object = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                payload = path.read_bytes()
            else:
                payload = None
            group = None
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                group = inodes.setdefault(st.st_ino, rel)
            mtime = st.st_mtime_ns // 1000 if not stat.S_ISDIR(st.st_mode) else None
            result[rel] = (
                kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, mtime, st.st_size,
                payload, group,
            )  # fmt: skip
    return result
