"""The textual age v1 header: stanzas, strict parsing, and the header MAC.

    age-encryption.org/v1
    -> X25519 <base64 ephemeral share>
    <base64 body, wrapped at 64 columns, last line shorter than 64>
    --- <base64 HMAC-SHA-256>

Parsing is strict (canonical unpadded base64, exact line shapes) because the
MAC is checked over the bytes as read: a lenient parser would let two
different byte strings mean the same header."""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass
from hashlib import sha256
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from engine.errors import DecryptionError

INTRO = b"age-encryption.org/v1\n"
_ARMOR_PREFIX = b"-----BEGIN AGE ENCRYPTED FILE-----"
_COLUMNS = 64
# age's own headers are a few hundred bytes; the cap only stops a hostile or
# non-age input from making us buffer without end while looking for "---".
MAX_HEADER_SIZE = 1 << 20
_READ_BLOCK = 4096
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]*")


class ReadableSource(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class Stanza:
    """One recipient stanza: args[0] is its type ("X25519", "scrypt", ...)."""

    args: tuple[str, ...]
    body: bytes


@dataclass(frozen=True)
class Header:
    stanzas: tuple[Stanza, ...]
    mac: bytes
    mac_input: bytes  # the header bytes up to and including "---"


def b64encode_raw(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64decode_raw(text: str) -> bytes:
    """Unpadded, canonical standard base64, as the spec requires decoders to
    enforce. Raises ValueError."""
    if not _BASE64_RE.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("invalid base64")
    data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    if b64encode_raw(data) != text:
        # Non-zero unused bits in the last character.
        raise ValueError("non-canonical base64")
    return data


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def header_mac(file_key: bytes, mac_input: bytes) -> bytes:
    key = hkdf_sha256(file_key, b"", b"header")
    return hmac.new(key, mac_input, sha256).digest()


def encode_stanza(stanza: Stanza) -> bytes:
    encoded = b64encode_raw(stanza.body)
    lines = [encoded[i : i + _COLUMNS] for i in range(0, len(encoded), _COLUMNS)]
    if not lines or len(lines[-1]) == _COLUMNS:
        # The body must end with a short line, so a full last line needs an empty one.
        lines.append("")
    text = "-> " + " ".join(stanza.args) + "\n" + "".join(line + "\n" for line in lines)
    return text.encode("ascii")


def encode_header(stanzas: list[Stanza], file_key: bytes) -> bytes:
    mac_input = INTRO + b"".join(encode_stanza(s) for s in stanzas) + b"---"
    mac = header_mac(file_key, mac_input)
    return mac_input + b" " + b64encode_raw(mac).encode("ascii") + b"\n"


def verify_header_mac(header: Header, file_key: bytes) -> None:
    expected = header_mac(file_key, header.mac_input)
    if not hmac.compare_digest(expected, header.mac):
        raise DecryptionError("age header MAC mismatch: the header was modified or is corrupt")


def read_header(src: ReadableSource) -> tuple[Header, bytes]:
    """Read and parse the header from `src`. Returns the header and the bytes
    read past its end (the start of the payload)."""
    buf = bytearray()
    eof = False
    search_from = 0
    while True:
        if len(buf) >= len(INTRO) or eof:
            _check_intro(bytes(buf[: len(INTRO)]))
            mac_line = buf.find(b"\n---", search_from)
            if mac_line >= 0:
                end = buf.find(b"\n", mac_line + 1)
                if end >= 0:
                    return _parse(bytes(buf[: end + 1])), bytes(buf[end + 1 :])
            else:
                search_from = max(0, len(buf) - 3)
        if eof:
            raise DecryptionError("the age header is truncated (no '---' MAC line)")
        if len(buf) > MAX_HEADER_SIZE:
            raise DecryptionError("the age header is too large (over 1 MiB); not a valid file")
        block = src.read(_READ_BLOCK)
        if not block:
            eof = True
        buf += block


def _check_intro(prefix: bytes) -> None:
    if prefix == INTRO:
        return
    if not prefix:
        raise DecryptionError("not an age-encrypted file: the input is empty")
    if INTRO.startswith(prefix):
        raise DecryptionError("the age header is truncated")
    if prefix.startswith(_ARMOR_PREFIX[: len(prefix)]):
        raise DecryptionError("ASCII-armored age files are not supported; dearmor it first")
    if prefix.startswith(b"age-encryption.org/"):
        raise DecryptionError("unsupported age format version (only v1 is supported)")
    raise DecryptionError("not an age-encrypted file (no 'age-encryption.org/v1' line)")


def _malformed(what: str) -> DecryptionError:
    return DecryptionError(f"malformed age header: {what}")


def _parse(raw: bytes) -> Header:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _malformed("non-ASCII bytes") from None
    lines = text.split("\n")[1:-1]  # drop the intro line and what follows the last LF
    stanzas: list[Stanza] = []
    i = 0
    while i < len(lines) and lines[i].startswith("-> "):
        args = tuple(lines[i][3:].split(" "))
        if not all(arg and all(33 <= ord(c) <= 126 for c in arg) for arg in args):
            raise _malformed("invalid stanza argument")
        i += 1
        body_lines: list[str] = []
        while True:
            if i >= len(lines):
                raise _malformed("stanza body does not end with a short line")
            line = lines[i]
            i += 1
            if len(line) > _COLUMNS:
                raise _malformed("stanza body line longer than 64 columns")
            body_lines.append(line)
            if len(line) < _COLUMNS:
                break
        try:
            body = b64decode_raw("".join(body_lines))
        except ValueError as exc:
            raise _malformed(f"stanza body: {exc}") from None
        stanzas.append(Stanza(args, body))
    if not stanzas:
        raise _malformed("no recipient stanza")
    if i != len(lines) - 1 or not lines[i].startswith("--- "):
        raise _malformed("unexpected line where a stanza or the '---' MAC line belongs")
    encoded_mac = lines[i][4:]
    try:
        mac = b64decode_raw(encoded_mac)
    except ValueError as exc:
        raise _malformed(f"MAC: {exc}") from None
    if len(mac) != 32:
        raise _malformed("MAC has the wrong length")
    mac_input = raw[: len(raw) - len(encoded_mac) - 2]  # through "---", without " <mac>\n"
    return Header(tuple(stanzas), mac, mac_input)
