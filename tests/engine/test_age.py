"""age v1 with X25519 keys, checked against the real `age` / `age-keygen`
CLIs in both directions, plus the streaming behaviour of AgeWriter/AgeReader."""

from __future__ import annotations

import io
import os
import random
import subprocess
import tarfile
from pathlib import Path

import pytest

from engine.age import (
    AgeReader,
    AgeWriter,
    generate_identity,
    is_age_file,
    parse_identity_file,
    recipient_from_identity,
)
from engine.age.header import read_header
from engine.age.stream import CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, NONCE_SIZE, TAG_SIZE
from engine.errors import DecryptionError

SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536]


def encrypt(data: bytes, recipients: list[str], piece: int = 100_003) -> bytes:
    out = io.BytesIO()
    with AgeWriter(out, recipients=recipients) as writer:
        for i in range(0, len(data), piece):
            assert writer.write(data[i : i + piece]) == len(data[i : i + piece])
    return out.getvalue()


def decrypt(blob: bytes, identities: list[str]) -> bytes:
    with AgeReader(io.BytesIO(blob), identities=identities) as reader:
        return reader.read()


def write_key(tmp_path: Path, identity: str, name: str = "key.txt") -> Path:
    path = tmp_path / name
    path.write_text(f"# test key\n{identity}\n")
    path.chmod(0o600)
    return path


def age_decrypt(blob: bytes, *key_files: Path) -> bytes:
    args = ["age", "-d"]
    for key in key_files:
        args += ["-i", str(key)]
    result = subprocess.run(args, input=blob, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def age_encrypt(data: bytes, *recipients: str) -> bytes:
    args = ["age"]
    for recipient in recipients:
        args += ["-r", recipient]
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


def age_keygen(tmp_path: Path, name: str) -> tuple[str, str, Path]:
    path = tmp_path / name
    subprocess.run(["age-keygen", "-o", str(path)], capture_output=True, check=True)
    text = path.read_text()
    [identity] = parse_identity_file(text)
    [public_line] = [line for line in text.splitlines() if line.startswith("# public key: ")]
    return identity, public_line.removeprefix("# public key: "), path


def expected_size(blob: bytes, plaintext_size: int) -> int:
    header, _ = read_header(io.BytesIO(blob))
    header_size = len(header.mac_input) + 1 + 43 + 1  # "--- " + MAC + LF
    chunks = max(1, -(-plaintext_size // CHUNK_SIZE))
    return header_size + NONCE_SIZE + plaintext_size + chunks * TAG_SIZE


@pytest.mark.parametrize("size", SIZES)
def test_we_encrypt_age_cli_decrypts(tmp_path: Path, size: int) -> None:
    identity, recipient = generate_identity()
    data = os.urandom(size)
    blob = encrypt(data, [recipient])
    # Exactly ceil(n / 64 KiB) chunks (one for n=0): a full last chunk is final,
    # not followed by an empty one.
    assert len(blob) == expected_size(blob, size)
    assert age_decrypt(blob, write_key(tmp_path, identity)) == data
    assert decrypt(blob, [identity]) == data


@pytest.mark.parametrize("size", SIZES)
def test_age_cli_encrypts_we_decrypt(size: int) -> None:
    identity, recipient = generate_identity()
    data = os.urandom(size)
    assert decrypt(age_encrypt(data, recipient), [identity]) == data


def test_age_keygen_keys_both_directions(tmp_path: Path) -> None:
    identity, public, key_file = age_keygen(tmp_path, "keygen.txt")
    assert recipient_from_identity(identity) == public
    data = os.urandom(200_000)
    assert age_decrypt(encrypt(data, [public]), key_file) == data
    assert decrypt(age_encrypt(data, public), [identity]) == data


def test_our_identity_gives_the_same_recipient_as_age_keygen(tmp_path: Path) -> None:
    identity, recipient = generate_identity()
    assert identity.startswith("AGE-SECRET-KEY-1") and identity == identity.upper()
    assert recipient.startswith("age1") and recipient == recipient.lower()
    result = subprocess.run(
        ["age-keygen", "-y", str(write_key(tmp_path, identity))],
        capture_output=True,
        check=True,
        text=True,
    )
    assert result.stdout.strip() == recipient
    assert generate_identity()[0] != identity


def test_multiple_recipients_each_identity_decrypts(tmp_path: Path) -> None:
    ours = [generate_identity() for _ in range(2)]
    keygen_identity, keygen_public, keygen_file = age_keygen(tmp_path, "k.txt")
    identities = [i for i, _ in ours] + [keygen_identity]
    recipients = [r for _, r in ours] + [keygen_public]
    data = os.urandom(150_000)

    blob = encrypt(data, recipients)
    header, _ = read_header(io.BytesIO(blob))
    assert [s.args[0] for s in header.stanzas] == ["X25519"] * 3
    for n, identity in enumerate(identities):
        assert decrypt(blob, [identity]) == data
        assert age_decrypt(blob, write_key(tmp_path, identity, f"id{n}.txt")) == data

    cli_blob = age_encrypt(data, *recipients)
    for identity in identities:
        assert decrypt(cli_blob, [identity]) == data
    # One matching identity among several unrelated ones is enough.
    assert decrypt(cli_blob, [generate_identity()[0], identities[1]]) == data
    assert age_decrypt(blob, keygen_file) == data


def test_20_mb_random_stream_both_directions(tmp_path: Path) -> None:
    identity, recipient = generate_identity()
    key = write_key(tmp_path, identity)
    data = os.urandom(20_000_000)
    # Uneven pieces so chunk boundaries never line up with writes.
    blob = encrypt(data, [recipient], piece=999_983)
    assert age_decrypt(blob, key) == data
    cli_blob = age_encrypt(data, recipient)
    reader = AgeReader(io.BytesIO(cli_blob), identities=[identity])
    rng = random.Random(7)
    parts = []
    while part := reader.read(rng.choice([1, 4096, 65535, 65536, 65537, 1_000_000])):
        parts.append(part)
    assert b"".join(parts) == data


def test_plaintext_never_appears_in_output() -> None:
    _, recipient = generate_identity()
    marker = b"PLAINTEXT-MARKER-0123456789"
    blob = encrypt(marker * 10_000, [recipient])
    assert marker not in blob
    assert b"PLAINTEXT" not in blob


def test_reads_in_arbitrary_sizes_from_a_short_reading_source() -> None:
    identity, recipient = generate_identity()
    data = os.urandom(5 * CHUNK_SIZE + 1234)
    blob = encrypt(data, [recipient])

    class Trickle(io.RawIOBase):
        """Returns at most a few bytes per read, as pipes and sockets may."""

        def __init__(self, raw: bytes) -> None:
            self._src = io.BytesIO(raw)
            self._rng = random.Random(3)

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return self._src.read(min(size, self._rng.randint(1, 9000)))

    reader = AgeReader(Trickle(blob), identities=[identity])
    rng = random.Random(11)
    got = bytearray()
    while True:
        n = rng.choice([0, 1, 7, 4096, 65535, 65536, 65537, 200_000])
        part = reader.read(n)
        if n and not part:
            break
        assert len(part) == min(n, len(data) - len(got))  # full reads until the end
        got += part
    assert bytes(got) == data
    assert reader.read() == b""


def test_readinto_and_read1() -> None:
    identity, recipient = generate_identity()
    data = os.urandom(2 * CHUNK_SIZE + 5)
    reader = AgeReader(io.BytesIO(encrypt(data, [recipient])), identities=[identity])
    buf = bytearray(1000)
    assert reader.readinto(buf) == 1000 and bytes(buf) == data[:1000]
    assert reader.read1(10**9) == data[1000:CHUNK_SIZE]  # the rest of one chunk
    assert reader.read() == data[CHUNK_SIZE:]
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read(1)


def test_tarfile_stream_mode_round_trip_and_plain_tar_cli(tmp_path: Path) -> None:
    identity, recipient = generate_identity()
    members = {f"dir/file{n}.bin": os.urandom(n * 40_000 + n) for n in range(6)}
    out = io.BytesIO()
    with (
        AgeWriter(out, recipients=[recipient]) as writer,
        tarfile.open(fileobj=writer, mode="w|") as tar,
    ):
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    blob = out.getvalue()

    got = {}
    with (
        AgeReader(io.BytesIO(blob), identities=[identity]) as reader,
        tarfile.open(fileobj=reader, mode="r|") as tar,
    ):
        for member in tar:
            extracted = tar.extractfile(member)
            assert extracted is not None
            got[member.name] = extracted.read()
    assert got == members

    # The manual restore path from DESIGN.md: age -d -i key F | tar -x.
    (tmp_path / "x").mkdir()
    plain = age_decrypt(blob, write_key(tmp_path, identity))
    subprocess.run(["tar", "-x", "-C", str(tmp_path / "x")], input=plain, check=True)
    for name, content in members.items():
        assert (tmp_path / "x" / name).read_bytes() == content


def test_writer_holds_at_most_one_chunk() -> None:
    _, recipient = generate_identity()
    out = io.BytesIO()
    writer = AgeWriter(out, recipients=[recipient])
    start = out.tell()  # header and nonce are written up front
    assert is_age_file(out.getvalue())
    writer.write(b"x" * CHUNK_SIZE)
    # A full chunk stays buffered: it might still be the final one.
    assert out.tell() == start
    writer.write(b"x")
    assert out.tell() == start + ENCRYPTED_CHUNK_SIZE
    writer.write(b"y" * (3 * CHUNK_SIZE))  # 4 * 64 KiB + 1 written so far
    assert out.tell() == start + 4 * ENCRYPTED_CHUNK_SIZE
    writer.close()  # the final chunk: 1 byte + tag
    end = start + 4 * ENCRYPTED_CHUNK_SIZE + 1 + TAG_SIZE
    assert out.tell() == end
    writer.close()  # idempotent
    assert out.tell() == end
    assert not out.closed  # close() leaves `out` open
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"z")


def test_reader_pulls_only_what_it_needs() -> None:
    identity, recipient = generate_identity()
    blob = encrypt(os.urandom(10 * CHUNK_SIZE), [recipient])
    src = io.BytesIO(blob)
    reader = AgeReader(src, identities=[identity])
    reader.read(10)
    assert src.tell() <= len(blob) - 8 * ENCRYPTED_CHUNK_SIZE


def test_exception_inside_with_leaves_a_detectably_truncated_file(tmp_path: Path) -> None:
    identity, recipient = generate_identity()
    out = io.BytesIO()
    with pytest.raises(RuntimeError), AgeWriter(out, recipients=[recipient]) as writer:
        writer.write(os.urandom(3 * CHUNK_SIZE + 7))
        raise RuntimeError("disk on fire")
    with pytest.raises(DecryptionError, match="ends before the final chunk"):
        decrypt(out.getvalue(), [identity])
    result = subprocess.run(
        ["age", "-d", "-i", str(write_key(tmp_path, identity))],
        input=out.getvalue(),
        capture_output=True,
        check=False,
    )
    assert result.returncode != 0


def test_is_age_file() -> None:
    _, recipient = generate_identity()
    assert is_age_file(encrypt(b"abc", [recipient])[:32])
    assert is_age_file(age_encrypt(b"abc", recipient))
    assert not is_age_file(b"")
    assert not is_age_file(b"age-encryption.org/v1")  # no LF: too short to tell
    assert not is_age_file(b"age-encryption.org/v2\n")
    assert not is_age_file(b"-----BEGIN AGE ENCRYPTED FILE-----\n")
    assert not is_age_file(b"\x28\xb5\x2f\xfd" + b"\0" * 40)  # zstd frame
