"""The incremental benchmark's data: an app-volume-like tree generated from a
seed, its mutation rounds, and a digest of a tree (paths, sizes, SHA-256s).

Three volumes, as a web app's Compose file would have them:
  files  src/: many small text sources (0.2-16 KiB, log-uniform, 100 per
         directory); uploads/: incompressible files (32 KiB-4 MiB)
  db     a few large database files made of 16 KiB pages (InnoDB's page
         size), each page a header, rows of text-like bytes and free space
  logs   a few text logs, appended to

A mutation round (mutate) changes about 5 % of the bytes the way a day of the
app would: ~1,000 random page rewrites spread over all database files in
place (each file gets a new mtime), appends to every log, edits in part of
the sources, new uploads, a few deletions and a few new sources.
Everything is deterministic from the seed (and the round number).
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

PAGE = 16 * 1024
# Random bytes mapped onto a small alphabet: text-like, compresses about 2:1.
_TEXT = bytes((b"etaoinshrdlcumwfgypbvkjxqz   \n,.<>=/;{}ETAOINSHR0123456789" * 5)[:256])


def text(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size).translate(_TEXT)


def page(rng: random.Random, number: int) -> bytes:
    """One database page: a header with its number, 55-95 % rows, zeros."""
    header = number.to_bytes(8, "big") + rng.randbytes(30)
    used = int(PAGE * rng.uniform(0.55, 0.95))
    return (header + text(rng, used - len(header))).ljust(PAGE, b"\0")


@dataclass
class Shape:
    """How much of what: TOTAL bytes in all, SOURCES small files."""

    total: int
    sources: int
    databases: int = 3
    logs: int = 8
    db_share: float = 0.45
    log_share: float = 0.10


@dataclass
class Tree:
    """The generated tree, kept up to date by mutate (what exists where)."""

    roots: dict[str, Path]  # volume key -> mountpoint
    sources: list[Path] = field(default_factory=list)
    uploads: list[Path] = field(default_factory=list)
    databases: list[Path] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def files(self) -> int:
        return len(self.sources) + len(self.uploads) + len(self.databases) + len(self.logs)


def generate(roots: dict[str, Path], shape: Shape, seed: int) -> tuple[Tree, int]:
    """Fill ROOTS (keys files, db, logs); returns the tree and its bytes."""
    rng = random.Random(seed)
    tree = Tree(roots)
    written = 0
    for index in range(shape.sources):
        folder = roots["files"] / "src" / f"pkg{index // 1000:03d}" / f"mod{index // 100 % 10}"
        if index % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        size = int(2 ** rng.uniform(7.6, 14))
        path = folder / f"f{index:06d}.py"
        path.write_bytes(text(rng, size))
        tree.sources.append(path)
        written += size
    db_dir = roots["db"] / "mysql" / "app"
    db_dir.mkdir(parents=True)
    db_budget = int(shape.total * shape.db_share)
    for index in range(shape.databases):
        pages = max(4, int(db_budget / shape.databases * rng.uniform(0.6, 1.4)) // PAGE)
        path = db_dir / f"table{index}.ibd"
        with open(path, "wb") as handle:
            for start in range(0, pages, 256):  # 4 MiB per write
                handle.write(b"".join(page(rng, n) for n in range(start, min(pages, start + 256))))
        tree.databases.append(path)
        written += pages * PAGE
    log_dir = roots["logs"] / "app"
    log_dir.mkdir(parents=True)
    for index in range(shape.logs):
        size = int(shape.total * shape.log_share / shape.logs * rng.uniform(0.5, 1.5))
        path = log_dir / f"{['access', 'error', 'worker', 'cron'][index % 4]}-{index}.log"
        with open(path, "wb") as handle:
            for done in range(0, size, 8 << 20):
                handle.write(text(rng, min(8 << 20, size - done)))
        tree.logs.append(path)
        written += size
    index = 0
    while written < shape.total:  # uploads fill up to the total
        folder = roots["files"] / "uploads" / f"2026-{index // 200 % 12 + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = min(int(2 ** rng.uniform(15, 22)), max(shape.total - written, 4096))
        path = folder / f"u{index:05d}.jpg"
        path.write_bytes(rng.randbytes(size))
        tree.uploads.append(path)
        written += size
        index += 1
    return tree, written


@dataclass
class Mutation:
    bytes_written: int = 0  # new bytes: pages, appends, edits, new files
    changed_file_bytes: int = 0  # whole sizes of the files changed or added
    pages: int = 0
    edited: int = 0
    added: int = 0
    deleted: int = 0


def mutate(tree: Tree, total: int, round_no: int, seed: int) -> Mutation:
    """One day of changes, about 5 % of TOTAL bytes; see the module doc."""
    rng = random.Random(seed * 1000 + round_no)
    out = Mutation()
    sizes = [path.stat().st_size for path in tree.databases]
    all_pages = sum(sizes) // PAGE
    rewrites = min(1000, max(len(sizes), all_pages // 50))
    for i, path in enumerate(tree.databases):
        count = max(1, round(rewrites * sizes[i] / sum(sizes)))  # every file gets some
        fd = os.open(path, os.O_WRONLY)
        try:
            for number in rng.sample(range(sizes[i] // PAGE), min(count, sizes[i] // PAGE)):
                os.pwrite(fd, page(rng, number), number * PAGE)
                out.pages += 1
        finally:
            os.close(fd)
        out.bytes_written += count * PAGE
        out.changed_file_bytes += sizes[i]
    appended = int(total * 0.006)
    for path in tree.logs:
        size = appended // len(tree.logs)
        with open(path, "ab") as handle:
            handle.write(text(rng, size))
        out.bytes_written += size
        out.changed_file_bytes += path.stat().st_size
    for path in rng.sample(tree.sources, len(tree.sources) // 50):  # 2 % edited in part
        size = path.stat().st_size
        edit = text(rng, min(size, rng.randint(20, 400)))
        with open(path, "r+b") as handle:
            handle.seek(rng.randrange(max(1, size - len(edit) + 1)))
            handle.write(edit)
        out.bytes_written += len(edit)
        out.changed_file_bytes += size
        out.edited += 1
    new_bytes = int(total * 0.032)
    folder = tree.roots["files"] / "uploads" / f"new-{round_no}"
    folder.mkdir(parents=True, exist_ok=True)
    index = 0
    while new_bytes > 0:
        size = min(int(2 ** rng.uniform(15, 22)), max(new_bytes, 4096))
        path = folder / f"n{index:04d}.jpg"
        path.write_bytes(rng.randbytes(size))
        tree.uploads.append(path)
        out.bytes_written += size
        out.changed_file_bytes += size
        out.added += 1
        new_bytes -= size
        index += 1
    source_dir = tree.roots["files"] / "src" / f"new-{round_no}"
    source_dir.mkdir(parents=True)
    for index in range(max(1, len(tree.sources) // 5000)):
        path = source_dir / f"added{index}.py"
        data = text(rng, int(2 ** rng.uniform(7.6, 14)))
        path.write_bytes(data)
        tree.sources.append(path)
        out.bytes_written += len(data)
        out.changed_file_bytes += len(data)
        out.added += 1
    for pool, count in ((tree.sources, max(1, len(tree.sources) // 2500)), (tree.uploads, 2)):
        for path in rng.sample(pool, min(count, len(pool) - 1)):
            path.unlink()
            pool.remove(path)
            out.deleted += 1
    return out


def digest(roots: dict[str, Path]) -> tuple[str, int, int]:
    """SHA-256 over every entry's volume, path, kind, size and content digest
    (symlinks: their target), in sorted order; plus (files, bytes)."""
    total = hashlib.sha256()
    files = size = 0
    for key in sorted(roots):
        root = roots[key]
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            rel = os.path.relpath(folder, root)
            total.update(f"{key}\0{rel}\0d\n".encode())
            for name in sorted(names):
                path = os.path.join(folder, name)
                if os.path.islink(path):
                    total.update(f"{key}\0{rel}/{name}\0l\0{os.readlink(path)}\n".encode())
                    continue
                with open(path, "rb") as handle:
                    content = hashlib.file_digest(handle, "sha256").hexdigest()
                length = os.path.getsize(path)
                total.update(f"{key}\0{rel}/{name}\0f\0{length}\0{content}\n".encode())
                files += 1
                size += length
    return total.hexdigest(), files, size
