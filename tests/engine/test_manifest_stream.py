"""The incremental manifest.json reader: any valid JSON layout of the
manifest reads as json.loads reads it, one entry at a time; anything else is
a ManifestFormatError that says what is wrong."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from engine.archive.manifest import Manifest, ManifestEntry
from engine.archive.manifest_stream import ManifestFormatError, ManifestStream


def _manifest() -> Manifest:
    entries = [
        ManifestEntry(path="backup.json", type="file", size=10, mode=0o644, uid=0, gid=0,
                      mtime_ns=1, sha256="ab" * 32),
        ManifestEntry(path="volumes/v", type="dir", size=0, mode=0o755, uid=33, gid=33,
                      mtime_ns=-1_500_000_000, dev=1, ino=2, ctime_ns=3),
        ManifestEntry(path="volumes/v/r\u00e9sum\u00e9 \"quoted\"\\", type="file", size=2**40,
                      mode=0o4755, uid=2**32 - 2, gid=0, mtime_ns=1_600_000_000_123_456_789,
                      sha256="cd" * 32, sparse=True),
        ManifestEntry(path="volumes/v/link", type="symlink", size=0, mode=0o777, uid=0, gid=0,
                      mtime_ns=5, link_target="/etc/" + "x" * 300),
        ManifestEntry(path="volumes/v/undecodable-\udce9", type="hardlink", size=0, mode=0o644,
                      uid=0, gid=0, mtime_ns=6, link_target="volumes/v/r\u00e9sum\u00e9"),
    ]  # fmt: skip
    return Manifest(
        backup_id="backup_20260105_103000_3fa2c1", kind="incremental", parent_backup_id="p",
        entries=entries, deleted=["volumes/v/gone", "volumes/v/also gone"],
        skipped=[{"path": "volumes/v/sock", "reason": "socket"}],
    )  # fmt: skip


def _read(raw: bytes, read_size: int = 1 << 20) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    stream = ManifestStream(io.BytesIO(raw), read_size=read_size)
    entries = list(stream.entries())
    return entries, stream.fields


def _expected(raw: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    body = json.loads(raw)
    entries = body.pop("entries")
    return entries, body


def _layouts(body: dict[str, Any]) -> dict[str, bytes]:
    """The same manifest in other valid layouts: pretty-printed, with CR/LF and
    tabs, entries separated by ",\\n" (the writer's next format), entries first."""
    others = {k: v for k, v in body.items() if k != "entries"}
    entries_first = {"entries": body["entries"], **others}
    version_last = {**{k: v for k, v in body.items() if k != "format_version"},
                    "format_version": body["format_version"]}  # fmt: skip
    items = ",\n".join(json.dumps(entry, separators=(",", ":")) for entry in body["entries"])
    one_per_line = json.dumps(others)[:-1]
    return {
        "compact": json.dumps(body, separators=(",", ":")).encode(),
        "indented": json.dumps(body, indent=3).encode(),
        "crlf-tabs": json.dumps(body, indent="\t").replace("\n", "\r\n").encode(),
        "spaces-everywhere": json.dumps(body, separators=(" , ", " : ")).encode() + b" \n ",
        "entries-per-line": f'{one_per_line}, "entries": [\n{items}\n]}}'.encode(),
        "entries-first": json.dumps(entries_first, indent=1).encode(),
        "version-last": json.dumps(version_last).encode(),
        # Raw UTF-8 (a lone surrogate, an undecodable name, cannot be UTF-8: left out).
        "non-ascii-utf8": json.dumps(
            {**body, "entries": [e for e in body["entries"] if "\udce9" not in e["path"]]},
            ensure_ascii=False,
        ).encode(),
        "byte-order-mark": b"\xef\xbb\xbf" + json.dumps(body).encode(),
    }


@pytest.mark.parametrize("read_size", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("layout", list(_layouts(json.loads(_manifest().to_bytes()))))
def test_every_layout_reads_as_json_loads_reads_it(layout: str, read_size: int) -> None:
    """Tiny reads put the window's edge inside every token: keys, strings,
    escapes, numbers, literals and the whitespace between them."""
    raw = _layouts(json.loads(_manifest().to_bytes()))[layout]
    assert _read(raw, read_size) == _expected(raw)


def test_the_writers_manifest_round_trips() -> None:
    manifest = _manifest()
    entries, fields = _read(manifest.to_bytes(), read_size=5)
    assert [ManifestEntry.from_json(e) for e in entries] == manifest.entries
    assert fields["deleted"] == manifest.deleted and fields["skipped"] == manifest.skipped
    assert fields["backup_id"] == manifest.backup_id and fields["format_version"] == 1


def test_a_number_cut_by_the_window_is_not_read_short() -> None:
    """format_version 10 must not read as 1 when a read ends after the "1"."""
    raw = b'{"format_version":10,"entries":[]}'
    for read_size in range(1, len(raw) + 1):
        with pytest.raises(ManifestFormatError, match="unsupported manifest format version 10"):
            _read(raw, read_size)


def test_values_longer_than_the_window_are_read_whole() -> None:
    body = {"format_version": 1, "note": "n" * 100_000, "entries": [{"path": "p" * 50_000}]}
    entries, fields = _read(json.dumps(body).encode(), read_size=1000)
    assert entries == body["entries"] and fields["note"] == body["note"]


@pytest.mark.parametrize("version", [2, 0, "1", 1.0, True, None])
def test_an_unsupported_format_version_is_refused(version: Any) -> None:
    body = {"format_version": version, "entries": [{"path": "a"}]}
    stream = ManifestStream(io.BytesIO(json.dumps(body).encode()))
    with pytest.raises(ManifestFormatError, match="unsupported manifest format version"):
        next(stream.entries())  # before any entry: the key comes first


def test_a_version_after_the_entries_is_checked_at_the_end() -> None:
    raw = json.dumps({"entries": [{"path": "a"}, {"path": "b"}], "format_version": 2}).encode()
    stream = ManifestStream(io.BytesIO(raw))
    seen = []
    with pytest.raises(ManifestFormatError, match="unsupported manifest format version 2"):
        for entry in stream.entries():
            seen.append(entry["path"])
    assert seen == ["a", "b"]


def test_a_missing_version_or_entries_list_is_refused() -> None:
    with pytest.raises(ManifestFormatError, match="version None"):
        _read(b'{"entries": []}')
    with pytest.raises(ManifestFormatError, match='no "entries"'):
        _read(b'{"format_version": 1}')


def test_every_truncation_is_a_clear_error() -> None:
    raw = json.dumps(json.loads(_manifest().to_bytes()), indent=1).encode()
    for cut in range(len(raw) - 1):  # the last byte is "}": without it, still truncated
        with pytest.raises(ManifestFormatError) as error:
            _read(raw[:cut], read_size=16)
        message = str(error.value)
        assert message.startswith("manifest.json is"), message
        if cut > 10:
            assert "truncated" in message or "not valid JSON" in message, message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "truncated"),
        (b"[]", "not a JSON object"),
        (b'{"format_version": 1, "entries": {}}', '"entries" in manifest.json is not a list'),
        (b'{"format_version": 1, "entries": [1]}', "entry #0 is not an object"),
        (b'{"format_version": 1, "entries": [{}, {"a": tru}]}', "not valid JSON"),
        (b'{"format_version": 1, "entries": [{} {}]}', "expecting ',' or ']'"),
        (b'{"format_version": 1 "entries": []}', "expecting ',' or '}'"),
        (b'{"format_version": 1, "entries": []} {}', "unexpected data after"),
        (b'{"format_version": 1, "entries": [], "entries": []}', 'two "entries"'),
        (b'{"format_version": 1, "entries": ["\xff"]}', "not UTF-8"),
        (b'{1: 2, "entries": []}', "not valid JSON"),
    ],
)
def test_invalid_documents_say_what_is_wrong(raw: bytes, message: str) -> None:
    with pytest.raises(ManifestFormatError, match=message):
        _read(raw, read_size=8)


def test_an_error_deep_in_a_long_list_is_found_without_reading_to_the_end() -> None:
    """A malformed entry is reported where it is, not after the rest of the
    file has been pulled into the window."""
    good = b'{"path": "x"}, ' * 10_000
    raw = b'{"format_version": 1, "entries": [' + good + b"{oops}, " + good * 100 + b"{}]}"

    class CountingReader(io.BytesIO):
        consumed = 0

        def read(self, size: int | None = -1) -> bytes:
            data = super().read(size)
            self.consumed += len(data)
            return data

    source = CountingReader(raw)
    with pytest.raises(ManifestFormatError, match="not valid JSON"):
        list(ManifestStream(source, read_size=4096).entries())
    assert source.consumed < 10 * len(good)
