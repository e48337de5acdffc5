"""Our hand-built tar headers: what tarfile writes, and what tarfile reads back."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from engine.archive.tar_headers import (
    DIRTYPE,
    LNKTYPE,
    REGTYPE,
    SYMTYPE,
    member_header,
    padding,
)

NS = 1_000_000_000
CASES = [
    ("volumes/v/a.txt", REGTYPE, 123, 0o644, 1000, 1000, 1_700_000_000 * NS, ""),
    ("volumes/v/dir", DIRTYPE, 0, 0o1777, 0, 0, 1_700_000_000_123_456_789, ""),
    ("volumes/v/données/日本語/🎉.txt", REGTYPE, 5, 0o4755, 33, 33, 1_700_000_000 * NS, ""),
    ("volumes/v/" + "long-name/" * 20 + "f", REGTYPE, 0, 0o600, 0, 0, 5 * NS, ""),
    ("volumes/v/" + "x" * 100, REGTYPE, 1, 0o600, 0, 0, 5 * NS, ""),  # exactly 110 chars
    ("volumes/v/" + "y" * 90, REGTYPE, 1, 0o600, 0, 0, 5 * NS, ""),  # exactly 100 chars
    ("volumes/v/link", SYMTYPE, 0, 0o777, 0, 0, 5 * NS, "../" * 60 + "target"),
    ("volumes/v/ünï-link", SYMTYPE, 0, 0o777, 0, 0, 5 * NS, "cible-ü"),
    ("volumes/v/hard", LNKTYPE, 0, 0o644, 0, 0, 5 * NS, "volumes/v/a.txt"),
    ("volumes/v/uid", REGTYPE, 3, 0o2750, 2**21 - 1, 2**21, 5 * NS, ""),
    ("volumes/v/bigids", REGTYPE, 3, 0o640, 2**32 - 2, 4_000_000_000, 5 * NS, ""),
    ("volumes/v/old", REGTYPE, 3, 0o644, 0, 0, -1_500_000_000, ""),
    ("volumes/v/old2", REGTYPE, 3, 0o644, 0, 0, -86_400 * NS, ""),
    ("volumes/v/tiny", REGTYPE, 3, 0o644, 0, 0, 1, ""),
    ("volumes/v/future", REGTYPE, 3, 0o644, 0, 0, 8**11 * NS + 7, ""),
    ("volumes/v/huge.img", REGTYPE, 9 * 2**30, 0o600, 0, 0, 1_700_000_000_5 * 10**8, ""),
    ("volumes/v/8gib", REGTYPE, 8**11, 0o600, 0, 0, NS, ""),
    ("volumes/v/8gib-1", REGTYPE, 8**11 - 1, 0o600, 0, 0, NS, ""),
    ("volumes/v/raw-\udcff\udcfe", REGTYPE, 2, 0o600, 0, 0, NS, ""),
]


def _tarfile_header(
    name: str, kind: bytes, size: int, mode: int, uid: int, gid: int, mtime_ns: int, link: str
) -> bytes:
    """What the previous writer produced with tarfile.TarInfo.tobuf."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.uid, info.gid = kind, size, mode, uid, gid
    info.uname = info.gname = ""
    info.linkname = link
    info.mtime = mtime_ns // NS
    if mtime_ns % NS:
        whole, fraction = divmod(abs(mtime_ns), NS)
        info.mtime = mtime_ns / 1e9
        info.pax_headers = {"mtime": f"{'-' if mtime_ns < 0 else ''}{whole}.{fraction:09d}"}
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0][-20:])
def test_headers_are_the_bytes_tarfile_writes(case: tuple) -> None:
    assert member_header(*case) == _tarfile_header(*case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0][-20:])
def test_tarfile_reads_back_every_field(case: tuple) -> None:
    name, kind, size, mode, uid, gid, mtime_ns, link = case
    # Only the header: tarfile would want SIZE bytes of data, too many for 9 GiB.
    raw = member_header(name, kind, size, mode, uid, gid, mtime_ns, link)
    data_size = size if size < 1 << 20 else 0
    if data_size != size:  # read the header alone: tarfile checks no data then
        info = tarfile.TarInfo.frombuf(raw[-512:], "utf-8", "surrogateescape")
        if size < 8**11:
            assert info.size == size and "size" not in _pax(raw)
        else:  # the ustar field cannot hold it: the PAX record does
            assert info.size == 0 and int(_pax(raw)["size"]) == size
        return
    stream = raw + bytes(size) + padding(size) + bytes(1024)
    with tarfile.open(fileobj=io.BytesIO(stream), encoding="utf-8", errors="surrogateescape") as t:
        (info,) = t.getmembers()
    assert info.name == name.rstrip("/")
    assert info.type == kind
    assert info.size == (size if kind == REGTYPE else 0)
    assert info.mode == mode
    assert (info.uid, info.gid) == (uid, gid)
    assert info.uname == info.gname == ""
    assert info.linkname == link
    if mtime_ns % NS:
        whole, fraction = divmod(abs(mtime_ns), NS)
        exact = f"{'-' if mtime_ns < 0 else ''}{whole}.{fraction:09d}"
        assert info.pax_headers["mtime"] == exact
    else:
        assert info.mtime == mtime_ns // NS


def _pax(raw: bytes) -> dict[str, str]:
    if raw[156:157] != b"x":
        return {}
    size = int(raw[124:136].rstrip(b"\0"), 8)
    records = raw[512 : 512 + size].decode("utf-8", "surrogateescape")
    out = {}
    for record in records.splitlines():
        keyword, _, value = record.split(" ", 1)[1].partition("=")
        out[keyword] = value
    return out


def test_pax_record_lengths_count_themselves() -> None:
    # A record whose length crosses a power of ten: "9x" vs "10x" digits.
    for n in range(80, 120):
        raw = member_header("v/" + "é" * n, REGTYPE, 0, 0o644, 0, 0, NS)
        size = int(raw[124:136].rstrip(b"\0"), 8)
        for record in raw[512 : 512 + size].split(b"\n")[:-1]:
            assert int(record.split(b" ", 1)[0]) == len(record) + 1


def test_gnu_tar_lists_our_headers(tmp_path: Path) -> None:
    stream = b"".join(
        member_header(n, k, s, m, u, g, t, li) + bytes(s) + padding(s)
        for n, k, s, m, u, g, t, li in CASES
        if s < 1 << 20
    )
    (tmp_path / "a.tar").write_bytes(stream + bytes(1024))
    out = subprocess.run(
        ["tar", "--numeric-owner", "-tvf", str(tmp_path / "a.tar")],
        check=True,
        capture_output=True,
    ).stdout.decode("utf-8", "surrogateescape")
    assert "données/日本語/🎉.txt" in out
    assert "4294967294/4000000000" in out
    assert "../" * 60 + "target" in out
