"""manifest.json read incrementally: its entries one at a time, never the
whole document in memory.

Deep verification compares the manifest with the tar members without
holding either in memory, and a manifest lists every file of the backup (a
few hundred bytes each, so hundreds of MB for millions of files). Any valid
JSON layout of the manifest object is accepted: any whitespace between
tokens, any order of its keys. Values are parsed by json's C scanner
(JSONDecoder.raw_decode) over a sliding window of the text; only the window
and one value at a time are in memory.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from engine.archive.layout import FORMAT_VERSION
from engine.errors import ArchiveError

READ_SIZE = 1 << 20
_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, nothing more
_AFTER_ITEM = re.compile(r"[ \t\n\r]*([,\]])[ \t\n\r]*")  # a list's separator or end
_DECODER = json.JSONDecoder()
_CUT_MARGIN = 16  # longer than any token a window can cut in two but a string


class ManifestFormatError(ArchiveError):
    """manifest.json is not valid JSON, or not a manifest this version reads."""


class ManifestStream:
    """Usage:

        manifest = ManifestStream(file)
        for entry in manifest.entries():  # dicts, in the file's order
            ...
        manifest.fields  # every other top-level key, complete once entries() ends

    entries() goes through the whole document: after its last entry it also
    parses the keys that follow "entries" and checks the document's end. A
    wrong format_version raises ManifestFormatError as soon as it is read: before
    the first entry when the key comes first (as the writer puts it),
    otherwise at the end. Each ManifestStream reads the file once.
    """

    def __init__(self, source: BinaryIO, read_size: int | None = None) -> None:
        self._source = source
        self._read_size = read_size or READ_SIZE
        self._utf8 = codecs.getincrementaldecoder("utf-8")()  # strict: bad bytes raise
        self._text = ""  # the window: decoded text not yet parsed starts at _pos
        self._pos = 0
        self._dropped = 0  # characters before the window, for error positions
        self._eof = False
        self._started = False
        self.fields: dict[str, Any] = {}
        self.entry_count = 0

    # -- the document ----------------------------------------------------------

    def entries(self) -> Iterator[dict[str, Any]]:
        if self._started:
            raise RuntimeError("a ManifestStream reads its file once")
        self._started = True
        while not self._text and not self._eof:  # a read may hold less than one character
            self._more()
        if self._text.startswith("\ufeff"):  # a UTF-8 byte order mark
            self._pos = 1
        if self._next_char() != "{":
            raise ManifestFormatError("manifest.json is not a JSON object")
        has_entries = False
        if self._peek() == "}":
            self._pos += 1
        else:
            while True:
                key = self._value()
                if not isinstance(key, str):
                    raise self._invalid("expecting a key")
                if self._next_char() != ":":
                    raise self._invalid("expecting ':' after a key")
                if key == "entries":
                    if has_entries:
                        raise ManifestFormatError('manifest.json has two "entries" keys')
                    has_entries = True
                    for entry in self._array("entries"):
                        if not isinstance(entry, dict):
                            raise ManifestFormatError(
                                f"manifest.json entry #{self.entry_count} is not an object"
                            )
                        self.entry_count += 1
                        yield entry
                elif self._peek() == "[":  # "deleted", "skipped": long lists, read item by item
                    self.fields[key] = list(self._array(key))
                else:
                    self.fields[key] = self._value()
                if key == "format_version":
                    _check_version(self.fields[key])
                separator = self._next_char()
                if separator == "}":
                    break
                if separator != ",":
                    raise self._invalid("expecting ',' or '}' after a value")
        self._skip_space()
        if self._pos < len(self._text):
            raise self._invalid("unexpected data after the manifest object")
        _check_version(self.fields.get("format_version"))
        if not has_entries:
            raise ManifestFormatError('manifest.json has no "entries" list')

    def _array(self, key: str) -> Iterator[Any]:
        if self._next_char() != "[":
            raise ManifestFormatError(f'"{key}" in manifest.json is not a list')
        if self._peek() == "]":
            self._pos += 1
            return
        scan, after_item = _DECODER.scan_once, _AFTER_ITEM.match
        while True:
            # Fast path: the item and the separator after it are both in the
            # window, so the item is complete (a number cannot go on).
            text, pos = self._text, self._pos
            try:
                value, end = scan(text, pos)
                separator = after_item(text, end)
            except (StopIteration, json.JSONDecodeError):
                separator = None
            if separator is not None:
                self._pos = separator.end()
                yield value
                if separator[1] == "]":
                    return
                continue
            yield self._value()  # the careful path: refills the window, explains errors
            separator_char = self._next_char()
            if separator_char == "]":
                return
            if separator_char != ",":
                raise self._invalid(f"expecting ',' or ']' in the \"{key}\" list")

    # -- tokens ----------------------------------------------------------------

    def _value(self) -> Any:
        """The JSON value at the current position (after whitespace)."""
        while True:
            self._skip_space()
            try:
                value, end = _DECODER.raw_decode(self._text, self._pos)
            except json.JSONDecodeError as exc:
                # A value cut by the window's end fails at (or a few
                # characters before: "tr" of true) the end, or at the start
                # of its unterminated string; anything else is an error now,
                # rather than after reading the rest of the file into the window.
                cut = exc.pos >= len(self._text) - _CUT_MARGIN or exc.msg.startswith("Unterm")
                if self._eof or not cut:
                    raise self._invalid(exc.msg, exc.pos) from None
                self._more()
                continue
            if end == len(self._text) and not self._eof:
                self._more()  # a number at the window's end may have more digits
                continue
            self._pos = end
            return value

    def _skip_space(self) -> None:
        while True:
            self._pos = _SPACE.match(self._text, self._pos).end()  # type: ignore[union-attr]
            if self._pos < len(self._text) or self._eof:
                return
            self._more()

    def _peek(self) -> str:
        self._skip_space()
        if self._pos >= len(self._text):
            raise ManifestFormatError("manifest.json is truncated (it ends early)")
        return self._text[self._pos]

    def _next_char(self) -> str:
        char = self._peek()
        self._pos += 1
        return char

    def _more(self) -> None:
        """Slide the window: drop what was parsed, decode the next bytes. At
        least as much as the window holds is read, so a long value is
        re-scanned a logarithmic number of times, not once per read."""
        size = max(self._read_size, len(self._text) - self._pos)
        data = self._source.read(size)
        try:
            text = self._utf8.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise ManifestFormatError(f"manifest.json is not UTF-8 text: {exc.reason}") from None
        self._eof = not data
        self._dropped += self._pos
        self._text = self._text[self._pos :] + text
        self._pos = 0

    def _invalid(self, message: str, pos: int | None = None) -> ManifestFormatError:
        pos = self._pos if pos is None else pos
        if self._eof and (pos >= len(self._text) or message.startswith("Unterminated")):
            return ManifestFormatError("manifest.json is truncated (it ends inside a value)")
        return ManifestFormatError(
            f"manifest.json is not valid JSON: {message} (character {self._dropped + pos})"
        )


def _check_version(version: Any) -> None:
    # `is not int`: True == 1 in Python, but a boolean is no version number.
    if type(version) is not int or version != FORMAT_VERSION:
        raise ManifestFormatError(f"unsupported manifest format version {version!r}")
