"""The backup side's volume walk, relative to directory fds.

A volume belongs to a container that may be hostile and keeps running during
a live backup: it can swap a directory for a symlink to a host path between
our listing and our opening it. So nothing here resolves a path of more than
one component: every directory is opened relative to its parent's fd with
O_NOFOLLOW|O_DIRECTORY, every member is stat'ed with AT_SYMLINK_NOFOLLOW,
symlinks are read with readlinkat and files are opened relative to their
directory with O_NOFOLLOW (see open_member_file). A member that changed type
between listing and opening is reported as CHANGED and never followed. Paths
longer than PATH_MAX are no problem either, as no long path is ever built
for the kernel.

The walk streams: it holds one sorted listing per directory on the current
branch, and one open fd per level up to MAX_OPEN_DIRS; deeper still, the
shallowest fds are closed and reopened (again one component at a time, the
identity checked) when the walk comes back to them.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a file must not hang the backup on open.
FILE_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_OPEN_DIRS = 128  # open directory fds of one walk, whatever its depth

# What each walk step is about (the first item of a Step).
DIR = "dir"  # a directory, already opened: ST is its fstat, PARENT its own fd
MEMBER = "member"  # anything else, not opened yet: ST is its fstatat (no follow)
VANISHED = "vanished"  # listed, gone before we could look at it
CHANGED = "changed"  # changed type between listing and opening: not followed

# (kind, path relative to the root ("." for the root), parent dir fd, leaf name, stat).
# PARENT is valid only until the walk goes on: use it before the next step.
Step = tuple[str, str, int, str, os.stat_result | None]


class MemberChanged(Exception):
    """The name no longer refers to what the listing saw (another type)."""


@dataclass(slots=True)
class _Frame:
    rel: str  # "." for the root
    leaf: str  # name in the parent directory ("" for the root)
    ident: tuple[int, int]  # (st_dev, st_ino) of the directory we opened
    names: Iterator[str]
    fd: int | None  # None: closed to bound the open fds, reopened on return


def _changed_type(exc: OSError) -> bool:
    # ELOOP: O_NOFOLLOW met a symlink; ENOTDIR: O_DIRECTORY met a non-directory.
    return exc.errno in (errno.ELOOP, errno.ENOTDIR)


def open_member_file(parent: int, leaf: str) -> tuple[int, os.stat_result]:
    """Open LEAF in directory PARENT for reading, never through a symlink, and
    check that it is a regular file: (fd, its fstat). Raises
    FileNotFoundError (vanished) or MemberChanged (no longer a regular file)."""
    try:
        try:
            fd = os.open(leaf, FILE_OPEN | os.O_NOATIME, dir_fd=parent)
        except PermissionError:  # O_NOATIME needs ownership unless root
            fd = os.open(leaf, FILE_OPEN, dir_fd=parent)
    except OSError as exc:
        if _changed_type(exc):
            raise MemberChanged(leaf) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # a directory or FIFO swapped in after the listing
        os.close(fd)
        raise MemberChanged(leaf)
    return fd, st


def read_member_link(parent: int, leaf: str) -> str:
    """The target of symlink LEAF in PARENT (read, never followed). Raises
    FileNotFoundError or MemberChanged (no longer a symlink)."""
    try:
        return os.readlink(leaf, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # readlinkat on something else than a symlink
            raise MemberChanged(leaf) from None
        raise


def walk_tree(root: str) -> Iterator[Step]:
    """Every member under ROOT, depth first in name order (a directory before
    its content), as Steps. ROOT itself is opened with O_NOFOLLOW."""
    try:
        fd = os.open(root, DIR_OPEN)
    except FileNotFoundError:
        yield VANISHED, ".", -1, "", None
        return
    except OSError as exc:
        if not _changed_type(exc):
            raise
        yield CHANGED, ".", -1, "", None
        return
    stack: list[_Frame] = []
    try:
        root_st = os.fstat(fd)
        stack.append(_Frame(".", "", (root_st.st_dev, root_st.st_ino), iter(()), fd))
        yield DIR, ".", fd, "", root_st
        stack[0].names = iter(sorted(os.listdir(fd)))
        open_dirs = 1
        while stack:
            frame = stack[-1]
            name = next(frame.names, None)
            if name is None:
                stack.pop()
                if frame.fd is not None:
                    os.close(frame.fd)
                    open_dirs -= 1
                continue
            if frame.fd is None:
                frame.fd = _reopen(stack)
                if frame.fd is None:  # moved or replaced while we were below it
                    stack.pop()
                    yield CHANGED, frame.rel, -1, frame.leaf, None
                    continue
                open_dirs += 1
            parent = frame.fd
            rel = name if frame.rel == "." else f"{frame.rel}/{name}"
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                yield VANISHED, rel, parent, name, None
                continue
            if not stat.S_ISDIR(st.st_mode):
                yield MEMBER, rel, parent, name, st
                continue
            try:
                child = os.open(name, DIR_OPEN, dir_fd=parent)
            except FileNotFoundError:
                yield VANISHED, rel, parent, name, None
                continue
            except OSError as exc:
                if not _changed_type(exc):
                    raise
                yield CHANGED, rel, parent, name, None
                continue
            # The directory we opened, not the one we listed: if another one
            # was moved in, it is a directory of this volume all the same.
            child_st = os.fstat(child)
            stack.append(_Frame(rel, name, (child_st.st_dev, child_st.st_ino), iter(()), child))
            open_dirs += 1
            if open_dirs > MAX_OPEN_DIRS:
                open_dirs -= _close_shallowest(stack)
            yield DIR, rel, child, name, child_st
            stack[-1].names = iter(sorted(os.listdir(child)))
    finally:
        for frame in stack:
            if frame.fd is not None:
                os.close(frame.fd)


def _close_shallowest(stack: list[_Frame]) -> int:
    """Close the fd of the shallowest open directory below the root (kept
    open: it anchors every reopening). The number of fds closed."""
    for frame in stack[1:-1]:
        if frame.fd is not None:
            os.close(frame.fd)
            frame.fd = None
            return 1
    return 0


def _reopen(stack: list[_Frame]) -> int | None:
    """A new fd for the top frame's directory, opened from the nearest open
    ancestor one component at a time, each directory checked to be the one
    we walked through; None if any is not (renamed or swapped meanwhile)."""
    start = len(stack) - 1
    while stack[start].fd is None:
        start -= 1
    anchor = stack[start].fd
    if anchor is None:  # cannot be: the root's fd stays open
        return None
    fd = anchor
    for frame in stack[start + 1 :]:
        try:
            child = os.open(frame.leaf, DIR_OPEN, dir_fd=fd)
        except OSError:
            child = None
        if fd != anchor:
            os.close(fd)
        if child is None:
            return None
        st = os.fstat(child)
        if (st.st_dev, st.st_ino) != frame.ident:
            os.close(child)
            return None
        fd = child
    return fd
