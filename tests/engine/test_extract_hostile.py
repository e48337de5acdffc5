"""Hostile archives: every one is refused with ArchiveError, and nothing is
written outside the staging dir (a canary outside stays as it was, and no
new file appears anywhere else)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.archive.manifest import Manifest, ManifestEntry
from engine.errors import ArchiveError
from engine.restore.extract import extract_volumes

KINDS = {tarfile.REGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
         tarfile.LNKTYPE: "hardlink"}  # fmt: skip
Member = tuple[tarfile.TarInfo, bytes]


@dataclass
class Arena:
    root: Path
    stage: Path  # staging dir of volume "v"
    outside: Path  # a directory the archive must never reach
    canary: Path

    def listing(self) -> dict[str, tuple[int, int, int]]:
        """Everything under the test dir except the staging dirs."""
        found = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith("stage")]
            for name in dirnames + filenames:
                st = os.lstat(Path(dirpath) / name)
                found[os.path.join(dirpath, name)] = (st.st_mode, st.st_size, st.st_mtime_ns)
        return found


@pytest.fixture
def arena(tmp_path: Path) -> Iterator[Arena]:
    stage, outside = tmp_path / "stage", tmp_path / "outside"
    stage.mkdir(mode=0o700)
    (tmp_path / "stage_w").mkdir(mode=0o700)
    outside.mkdir()
    canary = outside / "canary.txt"
    canary.write_text("untouched")
    arena = Arena(tmp_path, stage, outside, canary)
    before = arena.listing()
    cwd = os.getcwd()
    os.chdir(stage)  # relative escapes would land next to the stage
    try:
        yield arena
    finally:
        os.chdir(cwd)
    assert canary.read_text() == "untouched"
    assert arena.listing() == before, "something was written outside the staging dirs"


def info(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> Member:
    member = tarfile.TarInfo(name)
    member.type, member.size, member.linkname = kind, len(data), link
    member.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    member.mtime = 1_600_000_000
    return member, data


def d(name: str) -> Member:
    return info(name, tarfile.DIRTYPE)


def f(name: str, data: bytes = b"data") -> Member:
    return info(name, data=data)


def sym(name: str, target: str) -> Member:
    return info(name, tarfile.SYMTYPE, link=target)


def hard(name: str, target: str) -> Member:
    return info(name, tarfile.LNKTYPE, link=target)


def archive(
    members: list[Member],
    manifest: bool = True,
    volumes: tuple[str, ...] = ("v", "w"),
    roots: bool = True,
    tar_format: int = tarfile.PAX_FORMAT,
    corrupt: Callable[[Manifest], None] | None = None,
) -> io.BytesIO:
    """backup.json, volumes/v (and volumes/w), MEMBERS, and a manifest that
    agrees with them, so only the member checks can refuse the archive."""
    backup = json.dumps({"volumes": [{"name": v} for v in volumes]}).encode()
    head = [f("backup.json", backup)] + [d(f"volumes/{v}") for v in volumes if roots]
    entries = []
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tar_format) as tar:
        for member, data in head + members:
            tar.addfile(member, io.BytesIO(data))
            entries.append(ManifestEntry(
                path=member.name, type=KINDS.get(member.type, "file"),  # type: ignore[arg-type]
                size=len(data), mode=member.mode, uid=0, gid=0,
                mtime_ns=int(member.mtime) * 10**9, link_target=member.linkname or None,
                sha256=hashlib.sha256(data).hexdigest() if member.isreg() else None,
            ))  # fmt: skip
        if manifest:
            body = Manifest(backup_id="b", entries=entries)
            if corrupt is not None:
                corrupt(body)
            raw = body.to_bytes()
            tar.addfile(info("manifest.json", data=raw)[0], io.BytesIO(raw))
    out.seek(0)
    return out


def extract(arena: Arena, data: io.BytesIO, match: str) -> None:
    targets = {"v": arena.stage, "w": arena.root / "stage_w"}
    with pytest.raises(ArchiveError, match=match):
        extract_volumes(data, targets)


@pytest.mark.parametrize(
    ("members", "match"),
    [
        pytest.param([f("/tmp/abs")], "absolute path", id="absolute"),
        pytest.param([f("../outside/pwned")], r"'\.\.' path component", id="dotdot"),
        pytest.param([f("volumes/v/../../outside/pwned")], r"'\.\.'", id="dotdot-inside"),
        pytest.param([f("volumes/v/./x")], r"'\.' path component", id="dot"),
        pytest.param([f("volumes/v//x")], "empty", id="empty-component"),
        pytest.param([f("volumes/v/" + "n" * 256)], "over 255 bytes", id="long-component"),
        pytest.param([f("volumes/v/" + "/".join(["d" * 200] * 330))], "too long", id="long-path"),
        pytest.param([f("etc/passwd")], "unexpected member", id="not-in-format"),
        pytest.param([f("volumes/zz/x")], "unknown to backup.json", id="unknown-volume"),
        pytest.param([f("volumes/v/nodir/x")], "parent is not an earlier", id="no-parent"),
        pytest.param([f("volumes/v/x"), f("volumes/v/x")], "duplicate", id="duplicate-file"),
        pytest.param([d("volumes/v/x"), d("volumes/v/x")], "duplicate", id="duplicate-dir"),
        pytest.param([f("volumes/v/x"), sym("volumes/v/x", "y")], "duplicate", id="dup-kind"),
        pytest.param([info("volumes/v/tty", tarfile.CHRTYPE)], "character device", id="chr"),
        pytest.param([info("volumes/v/sda", tarfile.BLKTYPE)], "block device", id="blk"),
        pytest.param([info("volumes/v/fifo", tarfile.FIFOTYPE)], "FIFO", id="fifo"),
        pytest.param([info("volumes/v/c", tarfile.CONTTYPE)], "contiguous", id="contiguous"),
    ],
)
def test_refused_names_and_types(arena: Arena, members: list[Member], match: str) -> None:
    extract(arena, archive(members), match)


def test_nul_in_a_pax_name(arena: Arena) -> None:
    member, data = f("volumes/v/innocent")
    member.pax_headers = {"path": "volumes/v/a\0b"}
    extract(arena, archive([(member, data)]), "NUL")


@pytest.mark.parametrize("root", [sym("volumes/v", "/"), f("volumes/v")])
def test_volume_root_must_be_a_directory(arena: Arena, root: Member) -> None:
    extract(arena, archive([root, f("volumes/v/x")], roots=False), "not a directory")


def test_symlink_then_file_through_it(arena: Arena) -> None:
    members = [sym("volumes/v/escape", str(arena.outside)), f("volumes/v/escape/pwned")]
    extract(arena, archive(members), "parent is not an earlier")


def test_symlink_to_a_dir_inside_the_stage_is_not_followed_either(arena: Arena) -> None:
    members = [d("volumes/v/real"), sym("volumes/v/link", "real"), f("volumes/v/link/f")]
    extract(arena, archive(members), "parent is not an earlier")
    assert not (arena.stage / "real/f").exists()


def test_symlink_then_hardlink_through_it(arena: Arena) -> None:
    members = [sym("volumes/v/s", str(arena.canary)), hard("volumes/v/h", "volumes/v/s")]
    extract(arena, archive(members), "a symlink")


@pytest.mark.parametrize(
    "members",
    [
        pytest.param([f("volumes/v/evil")], id="file-over-it"),
        pytest.param([d("volumes/v/evil")], id="dir-over-it"),
        pytest.param([sym("volumes/v/evil", "x")], id="symlink-over-it"),
        pytest.param([f("volumes/v/evil/pwned")], id="file-through-it"),
        pytest.param([f("volumes/v/canary.txt")], id="existing-file"),
    ],
)
def test_symlink_already_on_disk_is_never_used(arena: Arena, members: list[Member]) -> None:
    os.symlink(arena.outside, arena.stage / "evil")
    os.symlink(arena.canary, arena.stage / "canary.txt")
    extract(arena, archive(members), "refused|parent is not an earlier")
    assert os.readlink(arena.stage / "evil") == str(arena.outside)


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("/etc/passwd", "absolute"),
        ("../../outside/canary.txt", r"'\.\.'"),
        ("volumes/v/../../outside/canary.txt", r"'\.\.'"),
        ("volumes/v/later", "not an earlier member"),
        ("volumes/w/file", "outside its volume"),
        ("volumes/v/dir", "a dir"),
        ("backup.json", "outside its volume"),
    ],
)
def test_refused_hardlinks(arena: Arena, target: str, match: str) -> None:
    members = [f("volumes/w/file"), d("volumes/v/dir"), hard("volumes/v/link", target),
               f("volumes/v/later")]  # fmt: skip
    extract(arena, archive(members), match)


def test_hardlink_from_a_skipped_volume_is_refused(arena: Arena) -> None:
    data = archive([f("volumes/w/file"), hard("volumes/v/link", "volumes/w/file")])
    with pytest.raises(ArchiveError, match="outside its volume"):
        extract_volumes(data, {"v": arena.stage})


def test_content_that_does_not_match_the_manifest(arena: Arena) -> None:
    def corrupt(manifest: Manifest) -> None:
        entry = next(e for e in manifest.entries if e.path == "volumes/v/x")
        entry.sha256 = hashlib.sha256(b"something else").hexdigest()

    extract(arena, archive([f("volumes/v/x")], corrupt=corrupt), "x'.*SHA-256")


def test_owner_that_does_not_match_the_manifest(arena: Arena) -> None:
    def corrupt(manifest: Manifest) -> None:
        next(e for e in manifest.entries if e.path == "volumes/v/x").uid = 33

    extract(arena, archive([f("volumes/v/x")], corrupt=corrupt), "mode or owner")


def test_member_missing_from_the_manifest(arena: Arena) -> None:
    def corrupt(manifest: Manifest) -> None:
        manifest.entries = [e for e in manifest.entries if e.path != "volumes/v/x"]

    extract(arena, archive([f("volumes/v/x")], corrupt=corrupt), "not in the manifest")


def test_missing_manifest(arena: Arena) -> None:
    extract(arena, archive([f("volumes/v/x")], manifest=False), "manifest.json is missing")


def test_member_after_the_manifest(arena: Arena) -> None:
    raw = archive([f("volumes/v/x")]).getvalue()
    end = raw.rindex(b"}") // 512 * 512 + 512  # just past manifest.json's data
    extra = io.BytesIO()
    with tarfile.open(fileobj=extra, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(f("volumes/v/late")[0], io.BytesIO(b"data"))
    extract(arena, io.BytesIO(raw[:end] + extra.getvalue()), "after manifest.json")


def test_backup_json_must_come_first(arena: Arena) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(d("volumes/v")[0])
    out.seek(0)
    extract(arena, out, "backup.json must be the first member")


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9])
def test_truncated_stream(arena: Arena, fraction: float) -> None:
    members = [f("volumes/v/big", os.urandom(3_000_000)), f("volumes/v/after")]
    data = archive(members).getvalue()
    extract(arena, io.BytesIO(data[: int(len(data) * fraction)]), "truncated|missing")


def test_corrupt_header(arena: Arena) -> None:
    data = bytearray(archive([f("volumes/v/x")]).getvalue())
    data[512 * 3 + 10] ^= 0x40  # a byte of a later header's name
    extract(arena, io.BytesIO(bytes(data)), "checksum")


def test_gnu_long_names_are_refused(arena: Arena) -> None:
    data = archive([f("volumes/v/" + "n" * 120)], tar_format=tarfile.GNU_FORMAT)
    extract(arena, data, "not a POSIX")


def test_global_pax_header_is_refused(arena: Arena) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"path": "../outside/pwned"}) as tar:  # fmt: skip
        tar.addfile(f("backup.json", b'{"volumes": ["v"]}')[0], io.BytesIO(b'{"volumes": ["v"]}'))
    out.seek(0)
    extract(arena, out, "global PAX header")


def test_pax_path_cannot_escape(arena: Arena) -> None:
    member, data = f("volumes/v/innocent")
    member.pax_headers = {"path": "volumes/v/../../../outside/pwned"}
    extract(arena, archive([(member, data)]), r"'\.\.'")


def test_staging_dir_that_is_a_symlink_is_refused(arena: Arena) -> None:
    link = arena.root / "stage_link"
    os.symlink(arena.outside, link)
    try:
        with pytest.raises(Exception, match="staging directory"):
            extract_volumes(archive([f("volumes/v/x")]), {"v": link})
    finally:
        link.unlink()


def test_directory_swapped_for_a_symlink_mid_extraction(
    arena: Arena, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process replaces a directory we just made with a symlink to
    the outside: the O_NOFOLLOW walk refuses to write through it."""
    real_mkdir = os.mkdir

    def racing_mkdir(path: str, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real_mkdir(path, mode, dir_fd=dir_fd)
        os.rename(path, f"{path}.moved", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.symlink(arena.outside, path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", racing_mkdir)
    members = [d("volumes/v/d"), f("volumes/v/d/pwned")]
    extract(arena, archive(members), "refused")


@pytest.mark.parametrize(
    "records",
    [b"0 a=b\n", b"-3 a=b\n", b"99 path=x\n", b"10 pathxxx\n", b"9 path=x ", b"x path=y\n"],
)
def test_malformed_pax_records(arena: Arena, records: bytes) -> None:
    """A zero or negative record length must not loop forever."""
    extended = tarfile.TarInfo("././@PaxHeader")
    extended.type, extended.size = tarfile.XHDTYPE, len(records)
    raw = archive([f("volumes/v/x")]).getvalue()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(extended, io.BytesIO(records))
        tar.addfile(f("volumes/v/y")[0], io.BytesIO(b"data"))
    # backup.json and the volume roots, then the hand-made extended header.
    head = raw[: 512 * 6]
    extract(arena, io.BytesIO(head + out.getvalue()), "invalid PAX header")
