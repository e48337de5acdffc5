"""HTTP Range requests for downloads: one byte range, as RFC 9110 defines it."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(Exception):
    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range HEADER asks for in a file of SIZE bytes; None for no header.

    Anything we cannot serve exactly (several ranges, another unit, junk, a
    start past the end) is refused with 416 rather than answered with the
    whole file: a client asking for a slice of a 50 GB archive should not
    get 50 GB because of a typo."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        raise RangeNotSatisfiable(
            "Range must be one byte range: bytes=START-END, bytes=START- or bytes=-SUFFIX "
            "(several ranges are not supported)",
            size,
        )
    first, last = match.groups()
    if first == "" and last == "":
        raise RangeNotSatisfiable("Range bytes=- names no bytes", size)
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable("Range asks for no bytes", size)
        return ByteRange(max(size - suffix, 0), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if end < start:
        raise RangeNotSatisfiable("Range end is before its start", size)
    if start >= size:
        raise RangeNotSatisfiable(f"Range starts beyond the end of the file ({size} bytes)", size)
    return ByteRange(start, min(end, size - 1))
