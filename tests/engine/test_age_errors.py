"""Every way an age file can be wrong ends in DecryptionError (or ValueError
for bad configuration), and no message carries a key or passphrase. Where it
makes sense the real `age` CLI is asked too, to prove the damage is real."""

from __future__ import annotations

import io
import os
import subprocess
import traceback
from pathlib import Path

import pytest

from engine.age import AgeReader, AgeWriter, bech32, generate_identity
from engine.age.header import Stanza, encode_header, read_header
from engine.age.keys import parse_recipient, scrypt_wrap, x25519_wrap
from engine.age.stream import (
    CHUNK_SIZE,
    ENCRYPTED_CHUNK_SIZE,
    NONCE_SIZE,
    chunk_nonce,
    payload_aead,
)
from engine.errors import DecryptionError
from engine.secret import Secret

IDENTITY, RECIPIENT = generate_identity()
DATA = os.urandom(3 * CHUNK_SIZE + 100)  # four chunks, the last one short


def encrypt(data: bytes = DATA, recipients: tuple[str, ...] = (RECIPIENT,)) -> bytes:
    out = io.BytesIO()
    with AgeWriter(out, recipients=recipients) as writer:
        writer.write(data)
    return out.getvalue()


BLOB = encrypt()


def header_end(blob: bytes) -> int:
    header, _ = read_header(io.BytesIO(blob))
    return len(header.mac_input) + len(" ") + 43 + len("\n")


def decrypt(blob: bytes, identities: tuple[str, ...] = (IDENTITY,)) -> bytes:
    with AgeReader(io.BytesIO(blob), identities=identities) as reader:
        return reader.read()


def full_text(exc: BaseException) -> str:
    """The message as a log would show it, causes included."""
    return "".join(traceback.format_exception(exc))


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("age") / "key.txt"
    path.write_text(IDENTITY + "\n")
    return path


def age_cli_accepts(blob: bytes, key_file: Path) -> bool:
    result = subprocess.run(
        ["age", "-d", "-i", str(key_file)], input=blob, capture_output=True, check=False
    )
    return result.returncode == 0


def flip(blob: bytes, index: int) -> bytes:
    changed = bytearray(blob)
    changed[index] ^= 0x01
    return bytes(changed)


def test_the_untouched_file_decrypts(key_file: Path) -> None:
    # The control for every test below.
    assert decrypt(BLOB) == DATA
    assert age_cli_accepts(BLOB, key_file)


def test_wrong_identity() -> None:
    other_identity, _ = generate_identity()
    with pytest.raises(DecryptionError, match="no identity matches") as info:
        decrypt(BLOB, (other_identity,))
    text = full_text(info.value)
    assert other_identity not in text and IDENTITY not in text
    assert other_identity[20:40] not in text


def test_identity_for_a_passphrase_file_and_passphrase_for_a_key_file() -> None:
    out = io.BytesIO()
    with AgeWriter(out, passphrase=Secret("pw-123456"), scrypt_work_factor=10) as writer:
        writer.write(b"x")
    with pytest.raises(DecryptionError, match="passphrase"):
        decrypt(out.getvalue())
    with pytest.raises(DecryptionError, match="no identity was given"):
        AgeReader(io.BytesIO(BLOB), passphrase=Secret("pw-123456"))


@pytest.mark.parametrize("where", ["intro", "stanza type", "share", "body", "MAC"])
def test_flipped_byte_in_header(where: str, key_file: Path) -> None:
    lines = BLOB[: header_end(BLOB)].split(b"\n")
    offsets = {
        "intro": 3,
        "stanza type": len(lines[0]) + 1 + 4,
        "share": len(lines[0]) + 1 + len(b"-> X25519 ") + 5,
        "body": len(lines[0]) + len(lines[1]) + 2 + 10,
        "MAC": header_end(BLOB) - 10,
    }
    bad = flip(BLOB, offsets[where])
    with pytest.raises(DecryptionError):
        decrypt(bad)
    assert not age_cli_accepts(bad, key_file)


def test_header_mac_catches_an_added_stanza(key_file: Path) -> None:
    # An unknown stanza is ignored by identities, so only the MAC can tell.
    end = header_end(BLOB)
    mac_line = BLOB.rindex(b"\n---", 0, end) + 1
    bad = BLOB[:mac_line] + b"-> grease-test abc\n\n" + BLOB[mac_line:]
    with pytest.raises(DecryptionError, match="MAC"):
        decrypt(bad)
    assert not age_cli_accepts(bad, key_file)


def test_header_mac_mismatch_with_well_formed_mac() -> None:
    end = header_end(BLOB)
    mac_start = BLOB.rindex(b"--- ", 0, end) + 4
    replacement = b"A" if BLOB[mac_start : mac_start + 1] != b"A" else b"B"
    bad = BLOB[:mac_start] + replacement + BLOB[mac_start + 1 :]
    with pytest.raises(DecryptionError, match="MAC mismatch"):
        decrypt(bad)


def test_header_from_another_file() -> None:
    other = encrypt(os.urandom(100))
    bad = other[: header_end(other)] + BLOB[header_end(BLOB) :]
    with pytest.raises(DecryptionError, match="chunk 0 failed authentication"):
        decrypt(bad)


@pytest.mark.parametrize(
    "offset",
    [0, 15, NONCE_SIZE, NONCE_SIZE + ENCRYPTED_CHUNK_SIZE + 5, -1],
    ids=["nonce-first", "nonce-last", "chunk0", "chunk1", "last-tag"],
)
def test_flipped_byte_in_payload(offset: int, key_file: Path) -> None:
    index = header_end(BLOB) + offset if offset >= 0 else len(BLOB) + offset
    bad = flip(BLOB, index)
    with pytest.raises(DecryptionError, match="failed authentication"):
        decrypt(bad)
    assert not age_cli_accepts(bad, key_file)


def test_swapped_chunks() -> None:
    start = header_end(BLOB) + NONCE_SIZE
    c0 = BLOB[start : start + ENCRYPTED_CHUNK_SIZE]
    c1 = BLOB[start + ENCRYPTED_CHUNK_SIZE : start + 2 * ENCRYPTED_CHUNK_SIZE]
    bad = BLOB[:start] + c1 + c0 + BLOB[start + 2 * ENCRYPTED_CHUNK_SIZE :]
    with pytest.raises(DecryptionError, match="chunk 0"):
        decrypt(bad)


def truncation_points() -> dict[str, int]:
    end = header_end(BLOB)
    payload = end + NONCE_SIZE
    return {
        "empty": 0,
        "mid-intro": 10,
        "mid-mac": end - 5,
        "no-nonce": end,
        "mid-nonce": end + 8,
        "no-chunks": payload,
        "mid-chunk0": payload + 100,
        "after-chunk0": payload + ENCRYPTED_CHUNK_SIZE,
        "before-last-chunk": payload + 3 * ENCRYPTED_CHUNK_SIZE,
        "last-byte": len(BLOB) - 1,
    }


@pytest.mark.parametrize("name", list(truncation_points()))
def test_truncated_file(name: str, key_file: Path) -> None:
    bad = BLOB[: truncation_points()[name]]
    with pytest.raises(DecryptionError):
        decrypt(bad)
    assert not age_cli_accepts(bad, key_file)


def test_truncation_at_a_chunk_boundary_says_truncated() -> None:
    payload = header_end(BLOB) + NONCE_SIZE
    with pytest.raises(DecryptionError, match="ends before the final chunk"):
        decrypt(BLOB[: payload + 2 * ENCRYPTED_CHUNK_SIZE])


@pytest.mark.parametrize("size", [100, 2 * CHUNK_SIZE], ids=["short-last", "full-last"])
@pytest.mark.parametrize("extra", [b"\x00", b"junk" * 10, os.urandom(ENCRYPTED_CHUNK_SIZE)])
def test_appended_bytes(size: int, extra: bytes, key_file: Path) -> None:
    blob = encrypt(os.urandom(size))
    assert decrypt(blob) and age_cli_accepts(blob, key_file)
    with pytest.raises(DecryptionError):
        decrypt(blob + extra)
    assert not age_cli_accepts(blob + extra, key_file)


def test_appended_bytes_after_a_full_final_chunk_are_named() -> None:
    blob = encrypt(os.urandom(CHUNK_SIZE))
    with pytest.raises(DecryptionError, match="after the end"):
        decrypt(blob + b"x")


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "empty"),
        (b"\x28\xb5\x2f\xfd" + os.urandom(100), "not an age"),
        (b"age-encryption.org/v2\n-> X25519 a\n\n--- x\n", "version"),
        (b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n", "armored"),
        (b"age-encryption.org/v1\n-> x\n" + b"A" * 64 * 20000, "too large"),
    ],
    ids=["empty", "zstd", "v2", "armor", "endless"],
)
def test_not_an_age_v1_file(blob: bytes, message: str) -> None:
    with pytest.raises(DecryptionError, match=message):
        decrypt(blob)


def malformed_headers() -> dict[str, bytes]:
    end = header_end(BLOB)
    header, rest = BLOB[:end], BLOB[end:]
    lines = header.split(b"\n")
    body = lines[2]
    return {
        "padding": header.replace(body, body + b"="),
        "long-line": header.replace(body, b"A" * 65),
        "no-stanza": b"\n".join([lines[0], *lines[3:]]),
        "empty-arg": header.replace(b"-> X25519 ", b"-> X25519  "),
        "short-mac": header[:-3] + b"\n",
        "non-ascii": header.replace(b"-> X25519", b"-> X25519 \xc3\xa9"),
        "no-mac-space": header.replace(b"--- ", b"---"),
    } | {"_rest": rest}


@pytest.mark.parametrize("name", [k for k in malformed_headers() if k != "_rest"])
def test_malformed_header(name: str) -> None:
    headers = malformed_headers()
    with pytest.raises(DecryptionError):
        decrypt(headers[name] + headers["_rest"])


def assemble(stanzas: list[Stanza], file_key: bytes, data: bytes) -> bytes:
    """An age file built from parts, for headers AgeWriter never writes."""
    nonce = os.urandom(NONCE_SIZE)
    aead = payload_aead(file_key, nonce)
    return encode_header(stanzas, file_key) + nonce + aead.encrypt(chunk_nonce(0, True), data, None)


def test_unknown_stanzas_are_ignored(key_file: Path) -> None:
    file_key = os.urandom(16)
    stanzas = [
        Stanza(("example.com/grease", "x+y", "z"), os.urandom(70)),
        x25519_wrap(file_key, parse_recipient(RECIPIENT)),
    ]
    blob = assemble(stanzas, file_key, b"hello")
    assert decrypt(blob) == b"hello"
    assert age_cli_accepts(blob, key_file)


def test_scrypt_stanza_must_be_alone() -> None:
    file_key = os.urandom(16)
    passphrase = Secret("pw-abcdef")
    stanzas = [
        scrypt_wrap(file_key, passphrase, 10),
        x25519_wrap(file_key, parse_recipient(RECIPIENT)),
    ]
    blob = assemble(stanzas, file_key, b"hello")
    with pytest.raises(DecryptionError, match="only stanza"):
        decrypt(blob)
    with pytest.raises(DecryptionError, match="only stanza"):
        AgeReader(io.BytesIO(blob), passphrase=passphrase)
    # (age 1.1.1 checks this only when decrypting with a passphrase, so the
    # CLI with an X25519 key accepts this header; we follow the spec's MUST.)


def test_empty_final_chunk_after_data_is_rejected() -> None:
    file_key = os.urandom(16)
    nonce = os.urandom(NONCE_SIZE)
    aead = payload_aead(file_key, nonce)
    stanzas = [x25519_wrap(file_key, parse_recipient(RECIPIENT))]
    blob = (
        encode_header(stanzas, file_key)
        + nonce
        + aead.encrypt(chunk_nonce(0, False), b"a" * CHUNK_SIZE, None)
        + aead.encrypt(chunk_nonce(1, True), b"", None)
    )
    with pytest.raises(DecryptionError, match="empty final chunk"):
        decrypt(blob)


def test_bad_recipients_are_value_errors_without_secrets() -> None:
    typo = RECIPIENT[:-3] + ("q" if RECIPIENT[-3] != "q" else "p") + RECIPIENT[-2:]
    cases = {
        "checksum": [typo],
        "secret identity": [IDENTITY],
        "secret identity ": [IDENTITY.lower()],
        "only X25519": [bech32.encode("age1pq", bytes(32))],
        "not a valid age recipient": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB"],
        "recipient #2 of 2": [RECIPIENT, ""],
        "not a single string": RECIPIENT,
    }
    for message, recipients in cases.items():
        with pytest.raises(ValueError, match=message.strip()) as info:
            AgeWriter(io.BytesIO(), recipients=recipients)
        text = full_text(info.value)
        assert IDENTITY not in text and IDENTITY.lower() not in text
        assert IDENTITY[16:36] not in text and IDENTITY[16:36].lower() not in text


def test_bad_identities_are_value_errors_without_secrets() -> None:
    typo = IDENTITY[:-3] + ("Q" if IDENTITY[-3] != "Q" else "P") + IDENTITY[-2:]
    cases = {
        "checksum": typo,
        "mixed case": IDENTITY[:30] + IDENTITY[30:].lower(),
        "is a recipient": RECIPIENT,
        "not an age X25519 identity": IDENTITY.lower(),
    }
    for message, identity in cases.items():
        with pytest.raises(ValueError, match=message) as info:
            AgeReader(io.BytesIO(BLOB), identities=[identity])
        text = full_text(info.value)
        assert IDENTITY[16:36] not in text and IDENTITY[16:36].lower() not in text
        assert typo not in text
    with pytest.raises(ValueError, match="nothing to decrypt"):
        AgeReader(io.BytesIO(BLOB))


def test_a_decryption_error_is_final() -> None:
    start = header_end(BLOB) + NONCE_SIZE
    bad = flip(BLOB, start + 10)  # chunk 0 is bad; chunks 1..3 are fine
    src = io.BytesIO(bad)
    reader = AgeReader(src, identities=[IDENTITY])
    with pytest.raises(DecryptionError, match="chunk 0") as first:
        reader.read(10)
    consumed = src.tell()
    # The same error again, without reading on past the bad chunk.
    for _ in range(3):
        with pytest.raises(DecryptionError) as again:
            reader.read(10)
        assert again.value is first.value
    assert src.tell() == consumed


def test_a_failed_write_is_never_sealed_as_complete() -> None:
    class FailingSink(io.BytesIO):
        fail = False

        def write(self, data: bytes) -> int:  # type: ignore[override]
            if self.fail:
                raise OSError("No space left on device")
            return super().write(data)

    sink = FailingSink()
    writer = AgeWriter(sink, recipients=[RECIPIENT])
    writer.write(os.urandom(CHUNK_SIZE + 1))
    sink.fail = True
    with pytest.raises(OSError, match="No space"):
        writer.write(os.urandom(CHUNK_SIZE))
    sink.fail = False
    writer.close()  # must not add a final chunk after the failed one
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"x")
    with pytest.raises(DecryptionError, match="ends before the final chunk"):
        decrypt(sink.getvalue())
