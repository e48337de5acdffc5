"""Bech32 (BIP 173) as age uses it: the original checksum constant (not
bech32m) and no 90-character limit, since age recipients for future key types
are longer. Only what age needs: encode and decode 8-bit payloads."""

from __future__ import annotations

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_INDEX = {c: i for i, c in enumerate(_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


class Bech32Error(ValueError):
    """The string is not valid Bech32. The message never quotes the input:
    the input may be a secret key."""


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _GENERATOR[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out: list[int] = []
    max_value = (1 << to_bits) - 1
    for value in data:
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_value)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & max_value)
    elif bits >= from_bits or (acc << (to_bits - bits)) & max_value:
        # BIP 173: at most 4 bits of zero padding are allowed when decoding.
        raise Bech32Error("invalid padding in Bech32 data")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Lower-case Bech32 of `data` under human-readable part `hrp`."""
    if not hrp or any(not 33 <= ord(c) <= 126 for c in hrp):
        raise Bech32Error("invalid Bech32 human-readable part")
    if hrp.lower() != hrp and hrp.upper() != hrp:
        raise Bech32Error("mixed-case Bech32 human-readable part")
    hrp = hrp.lower()
    values = _convert_bits(data, 8, 5, pad=True)
    polymod = _polymod([*_hrp_expand(hrp), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[v] for v in [*values, *checksum])


def decode(text: str) -> tuple[str, bytes]:
    """(human-readable part as written, payload). Mixed case is rejected, as
    BIP 173 requires; callers compare the HRP case-sensitively, as age does."""
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("mixed case in Bech32 string")
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise Bech32Error("invalid character in Bech32 string")
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise Bech32Error("Bech32 separator '1' missing or misplaced")
    hrp = text[:pos]
    lower = text.lower()
    try:
        values = [_CHARSET_INDEX[c] for c in lower[pos + 1 :]]
    except KeyError:
        raise Bech32Error("invalid character in Bech32 data part") from None
    if _polymod([*_hrp_expand(lower[:pos]), *values]) != 1:
        raise Bech32Error("invalid Bech32 checksum (typo in the key?)")
    return hrp, bytes(_convert_bits(values[:-6], 5, 8, pad=False))
