"""The Bech32 codec (BIP 173 vectors) and the age key encodings built on it."""

from __future__ import annotations

import os

import pytest

from engine.age import bech32, generate_identity, parse_identity_file, recipient_from_identity

# The X25519 example from the age spec (C2SP age.md): identity 0x42 * 32.
SPEC_IDENTITY = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
SPEC_RECIPIENT = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"

VALID = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]

INVALID = {
    "hrp-char-0x20": "\x201nwldj5",
    "hrp-char-0x7f": "\x7f1axkwrx",
    "no-separator": "pzry9x0s0muk",
    "empty-hrp": "1pzry9x0s0muk",
    "bad-data-char": "x1b4n0q5v",
    "short-checksum": "li1dgmt3",
    "bad-checksum-char": "de1lg7wt\xff",
    "uppercase-hrp-checksum": "A1G7SGD8",
    "empty-hrp-2": "10a06t8",
    "empty-hrp-3": "1qzzfhee",
    "mixed-case": "a12UEL5L",
}


@pytest.mark.parametrize("text", VALID)
def test_valid_bip173_vectors(text: str) -> None:
    hrp, data = bech32.decode(text)
    assert hrp == text[: text.rfind("1")]
    # Re-encoding gives the lower-case form back.
    assert bech32.encode(hrp, data) == text.lower()


@pytest.mark.parametrize("text", list(INVALID.values()), ids=list(INVALID))
def test_invalid_bip173_vectors(text: str) -> None:
    with pytest.raises(bech32.Bech32Error):
        bech32.decode(text)


def test_round_trip_and_single_character_typos_are_caught() -> None:
    for size in (0, 1, 20, 32, 33, 100):
        data = os.urandom(size)
        text = bech32.encode("age", data)
        assert bech32.decode(text) == ("age", data)
        assert bech32.decode(text.upper()) == ("AGE", data)
        for pos in range(4, len(text)):
            replacement = "q" if text[pos] != "q" else "p"
            with pytest.raises(bech32.Bech32Error):
                bech32.decode(text[:pos] + replacement + text[pos + 1 :])


def test_error_messages_never_quote_the_input() -> None:
    identity, _ = generate_identity()
    typo = identity[:-1] + ("Q" if identity[-1] != "Q" else "P")
    with pytest.raises(bech32.Bech32Error) as info:
        bech32.decode(typo)
    assert identity[16:] not in str(info.value) and typo[16:] not in str(info.value)


def test_spec_example_key_pair() -> None:
    assert recipient_from_identity(SPEC_IDENTITY) == SPEC_RECIPIENT
    assert bech32.decode(SPEC_IDENTITY) == ("AGE-SECRET-KEY-", b"\x42" * 32)


def test_generated_keys_have_the_age_shape() -> None:
    identity, recipient = generate_identity()
    assert len(identity) == 74 and identity.startswith("AGE-SECRET-KEY-1")
    assert len(recipient) == 62 and recipient.startswith("age1")
    assert recipient_from_identity(identity) == recipient
    assert recipient_from_identity(f"  {identity}\n") == recipient


def test_parse_identity_file() -> None:
    text = f"# created: 2026-01-05\n# public key: {SPEC_RECIPIENT}\n\n{SPEC_IDENTITY}\n"
    assert parse_identity_file(text) == [SPEC_IDENTITY]
