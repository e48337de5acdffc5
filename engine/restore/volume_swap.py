"""Swapping a volume's data for restored data, with rollback and crash recovery.

Docker keeps a volume's files in /var/lib/docker/volumes/<name>/_data. A
restore extracts into a staging dir beside it (the same filesystem, so every
rename below is atomic), then swaps. The names say what state a volume is in:

    _restore_staging-<token>   extraction target, made by stage_dir_for()
    _data.old-<token>          the previous data, kept until commit or rollback
    _data.trash-<token>        committed: the previous data, being deleted

    swap_in:   _data -> _data.old-<t>, then _restore_staging-<t> -> _data
    commit:    keep(): _data.old-<t> -> _data.trash-<t> (the decision), then
               remove_old(): delete it (tidying: may fail, finished later)
    rollback:  _data -> _restore_staging-<t>, then _data.old-<t> -> _data,
               then delete the staging dir

Each rename is made durable (fsync of the volume dir) before the next step.
After a crash at any point, recover_volume() reads the names: a
`_data.old-*` means a swap was neither committed nor rolled back, so the old
data goes back (the restore did not finish: it must not half-apply); a
`_data.trash-*` means commit was decided, so its deletion is finished
(it never blocks a new swap); leftover staging dirs are deleted.

Run these only while the app's restore lock is held and its containers are
stopped: a running container keeps the directory it mounted, old or new.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.errors import EngineError

DATA = "_data"
STAGING_PREFIX = "_restore_staging-"
OLD_PREFIX = "_data.old-"
TRASH_PREFIX = "_data.trash-"

Recovery = Literal["clean", "rolled_back", "finished_commit", "removed_staging", "no_data"]


def stage_dir_for(volume_data_dir: Path, name: str | None = None) -> Path:
    """A new empty, private (0700) staging dir beside VOLUME_DATA_DIR (the
    volume's `_data`), named NAME (from staging_name: a restore journals
    the names before making the dirs) or a new name. Extraction gives it the
    archived volume root's owner, mode and mtime, so once swapped in it is
    exactly the volume's root."""
    parent = volume_data_dir.parent
    name = name or staging_name()
    if not name.startswith(STAGING_PREFIX) or "/" in name:
        raise EngineError(f"{name!r} is not a staging dir name")
    path = parent / name
    os.mkdir(path, 0o700)
    _fsync_dir(parent)
    return path


def staging_name() -> str:
    """A new staging dir's name, `_restore_staging-<16 hex>`."""
    return f"{STAGING_PREFIX}{secrets.token_hex(8)}"


def discard_stage(staged: Path) -> None:
    """Delete a staging dir after a failed extraction (symlinks inside are
    removed, never followed)."""
    if os.path.lexists(staged):
        _remove_tree(staged)


@dataclass
class SwapHandle:
    data_dir: Path  # .../<volume>/_data, now holding the restored data
    old: Path  # .../<volume>/_data.old-<token>, the previous data
    staged: Path  # the staging name, where rollback moves the restored data
    state: Literal["swapped", "committed", "rolled_back"] = "swapped"

    @property
    def trash(self) -> Path:
        """Where the old data goes once the restored data is kept."""
        return trash_for(self.old)

    def commit(self) -> None:
        """Keep the restored data: the old data is deleted."""
        self.keep()
        self.remove_old()

    def keep(self) -> None:
        """The decision: the restored data stays, the old data is given up
        (renamed to trash; a crash from here on never puts it back)."""
        if self.state == "committed":
            return
        if self.state != "swapped":
            raise EngineError(f"{self.data_dir}: cannot commit a swap that was rolled back")
        # Extraction wrote through the page cache: the restored data must be
        # on disk before the only other copy is given up.
        os.sync()
        # Renamed first, so a crash while deleting never looks like old data to restore.
        _rename(self.old, self.trash)
        self.state = "committed"

    def remove_old(self) -> None:
        """Delete the old data after keep(), and any trash an earlier restore
        of this volume could not delete. Only tidying: a failure here leaves
        `_data.trash-*` for a later restore or recover_volume() to finish,
        and changes nothing the app sees."""
        if self.state != "committed":
            raise EngineError(f"{self.data_dir}: the restored data was not kept (keep() first)")
        remove_trash(self.data_dir.parent)

    def rollback(self) -> None:
        """Put the old data back exactly as it was; delete the restored data."""
        if self.state == "rolled_back":
            return
        if self.state != "swapped":
            raise EngineError(f"{self.data_dir}: already committed, the old data is gone")
        _rename(self.data_dir, self.staged)
        _rename(self.old, self.data_dir)
        self.state = "rolled_back"
        _remove_tree(self.staged)


def swap_in(data_dir: Path, staged: Path) -> SwapHandle:
    """Make STAGED (from stage_dir_for) the volume's DATA_DIR; keep the old
    data as `_data.old-<token>` until commit() or rollback(). A missing
    DATA_DIR is first created empty, so a rollback leaves an empty volume.
    Only a `_data.old-*` (a swap neither committed nor rolled back) makes it
    refuse; old data left in `_data.trash-*` was given up and does not."""
    parent = data_dir.parent
    if staged.parent != parent or not staged.name.startswith(STAGING_PREFIX):
        raise EngineError(f"{staged} is not a staging dir beside {data_dir}")
    if os.lstat(staged).st_dev != os.lstat(parent).st_dev:
        raise EngineError(f"{staged} is not on the filesystem of {data_dir}")
    pending = [name for name in os.listdir(parent) if name.startswith(OLD_PREFIX)]
    if pending:
        raise EngineError(
            f"{parent}: an earlier swap was not finished ({pending[0]}); recover first"
        )
    if not os.path.lexists(data_dir):
        os.mkdir(data_dir, 0o755)
    old = parent / (OLD_PREFIX + staged.name.removeprefix(STAGING_PREFIX))
    _rename(data_dir, old)
    try:
        _rename(staged, data_dir)
    except OSError:
        _rename(old, data_dir)
        raise
    return SwapHandle(data_dir=data_dir, old=old, staged=staged)


def remove_trash(volume_dir: Path) -> bool:
    """Delete every `_data.trash-*` in VOLUME_DIR (old data whose restore
    was committed); True if there was any. Each is tried; the first
    failure is raised once all were."""
    trash = [name for name in os.listdir(volume_dir) if name.startswith(TRASH_PREFIX)]
    failure: OSError | None = None
    for name in trash:
        try:
            _remove_tree(volume_dir / name)
        except OSError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return bool(trash)


def trash_for(old: Path) -> Path:
    """The trash name of an old-data dir `_data.old-<t>`: `_data.trash-<t>`."""
    return old.with_name(TRASH_PREFIX + old.name.removeprefix(OLD_PREFIX))


def recover_volume(volume_dir: Path, keep_restored: bool = False) -> Recovery:
    """After a crash, bring VOLUME_DIR (holding `_data`) back to a clean state:
    an unfinished swap is rolled back (or, KEEP_RESTORED: the restore had
    decided to keep its data, so the old copy is dropped as commit drops it),
    an unfinished commit completed and staging leftovers deleted. Returns
    what was done ("clean" if nothing; "no_data" if `_data` is missing and
    there was nothing to put back)."""
    if keep_restored:
        for name in os.listdir(volume_dir):
            if name.startswith(OLD_PREFIX):
                _rename(volume_dir / name, trash_for(volume_dir / name))
    names = os.listdir(volume_dir)
    olds = sorted(name for name in names if name.startswith(OLD_PREFIX))
    if len(olds) > 1:
        raise EngineError(
            f"{volume_dir}: several unfinished swaps ({', '.join(olds)}); resolve by hand"
        )
    result: Recovery = "finished_commit" if remove_trash(volume_dir) else "clean"
    data = volume_dir / DATA
    if olds:
        token = olds[0].removeprefix(OLD_PREFIX)
        if os.path.lexists(data):  # the restored data, never committed: moved aside
            aside = volume_dir / f"{STAGING_PREFIX}{token}"
            if os.path.lexists(aside):
                aside = volume_dir / f"{STAGING_PREFIX}{secrets.token_hex(8)}"
            _rename(data, aside)
        _rename(volume_dir / olds[0], data)
        result = "rolled_back"
    for name in os.listdir(volume_dir):
        if name.startswith(STAGING_PREFIX):
            _remove_tree(volume_dir / name)
            result = "removed_staging" if result == "clean" else result
    if result == "clean" and not os.path.lexists(data):
        return "no_data"
    return result


def _rename(src: Path, dst: Path) -> None:
    """Atomic rename within one directory, durable before returning.
    os.rename would replace an existing empty dir DST: refuse instead (an
    OSError, like every other failure of a rename)."""
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, f"cannot rename {src.name}: it exists", str(dst))
    os.rename(src, dst)
    _fsync_dir(dst.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    # shutil.rmtree walks with directory fds on Linux: a symlink inside is
    # unlinked, never followed, even if the tree changes while it runs.
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)
    _fsync_dir(path.parent)
