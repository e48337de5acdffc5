"""age v1 passphrase (scrypt) encryption against the real `age` CLI.

The age CLI reads passphrases only from a terminal (/dev/tty), never from
stdin or an argument, so these tests run it under a pseudo-terminal (Python's
`pty` module) and type the passphrase at its prompts."""

from __future__ import annotations

import io
import os
import pty
import select
import signal
import termios
import time
from pathlib import Path

import pytest

from engine.age import AgeReader, AgeWriter
from engine.age.header import read_header
from engine.errors import DecryptionError
from engine.secret import Secret

PASSPHRASE = "correct horse battery staple \u00e9"  # non-ASCII: UTF-8 on both sides
FAST = 10  # scrypt work factor for tests that do not test the work factor


def age_on_tty(argv: list[str], passphrase: str, prompts: int, timeout: float = 30) -> int:
    """Run `argv` on a pseudo-terminal, answer `prompts` passphrase prompts,
    return the exit code. Fails the test (and kills the child) on a hang."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdin/stdout/controlling tty are the pty
        os.execvp(argv[0], argv)  # noqa: S606 - an argument list, no shell
    transcript = b""
    answered = 0
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                pytest.fail(f"age hung on the terminal; it printed {transcript!r}")
            try:
                data = os.read(fd, 1024)
            except OSError:  # EIO: the child closed the terminal (exited)
                break
            if not data:
                break
            transcript += data
            if transcript.count(b"passphrase") > answered and answered < prompts:
                wait_for_no_echo(fd, deadline)
                os.write(fd, passphrase.encode() + b"\n")
                answered += 1
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status)


def wait_for_no_echo(fd: int, deadline: float) -> None:
    """age prints the prompt, then turns echo off to read: typing before that
    would echo the passphrase (and races the terminal mode switch)."""
    while termios.tcgetattr(fd)[3] & termios.ECHO:
        if time.monotonic() > deadline:
            pytest.fail("age never turned terminal echo off for the passphrase")
        time.sleep(0.005)


def read_output(path: Path) -> bytes:
    # age creates the -o file on its first write, so an empty plaintext leaves none.
    return path.read_bytes() if path.exists() else b""


def encrypt(data: bytes, passphrase: str = PASSPHRASE, work_factor: int = FAST) -> bytes:
    out = io.BytesIO()
    with AgeWriter(out, passphrase=Secret(passphrase), scrypt_work_factor=work_factor) as w:
        w.write(data)
    return out.getvalue()


def decrypt(blob: bytes, passphrase: str = PASSPHRASE) -> bytes:
    with AgeReader(io.BytesIO(blob), passphrase=Secret(passphrase)) as reader:
        return reader.read()


@pytest.mark.parametrize("size", [0, 1, 65536, 65537, 3 * 65536])
def test_we_encrypt_age_cli_decrypts(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f.age").write_bytes(encrypt(data))
    argv = ["age", "-d", "-o", str(tmp_path / "f.out"), str(tmp_path / "f.age")]
    assert age_on_tty(argv, PASSPHRASE, prompts=1) == 0
    assert read_output(tmp_path / "f.out") == data
    assert decrypt((tmp_path / "f.age").read_bytes()) == data


@pytest.mark.slow
def test_age_cli_encrypts_we_decrypt(tmp_path: Path) -> None:
    data = os.urandom(3 * 65536 + 11)
    (tmp_path / "f").write_bytes(data)
    argv = ["age", "-p", "-o", str(tmp_path / "f.age"), str(tmp_path / "f")]
    assert age_on_tty(argv, PASSPHRASE, prompts=2) == 0  # enter + confirm
    blob = (tmp_path / "f.age").read_bytes()
    assert read_header(io.BytesIO(blob))[0].stanzas[0].args[0] == "scrypt"
    assert decrypt(blob) == data


def test_wrong_passphrase_is_a_decryption_error_without_the_passphrase() -> None:
    blob = encrypt(b"data")
    for wrong in ["not the passphrase", PASSPHRASE + " ", PASSPHRASE.upper()]:
        with pytest.raises(DecryptionError, match="wrong passphrase") as info:
            decrypt(blob, wrong)
        assert wrong not in str(info.value) and PASSPHRASE not in str(info.value)
    assert decrypt(blob) == b"data"


def test_age_cli_rejects_our_file_with_a_wrong_passphrase(tmp_path: Path) -> None:
    (tmp_path / "f.age").write_bytes(encrypt(b"secret data"))
    argv = ["age", "-d", "-o", str(tmp_path / "f.out"), str(tmp_path / "f.age")]
    assert age_on_tty(argv, "wrong", prompts=1) != 0


@pytest.mark.slow
def test_default_work_factor_is_18_and_the_cli_accepts_it(tmp_path: Path) -> None:
    blob = encrypt(b"hello", work_factor=18)
    [stanza] = read_header(io.BytesIO(blob))[0].stanzas
    assert stanza.args[0] == "scrypt" and stanza.args[2] == "18"
    out = io.BytesIO()
    with AgeWriter(out, passphrase=Secret(PASSPHRASE)) as writer:  # the default
        writer.write(b"x")
    assert read_header(io.BytesIO(out.getvalue()))[0].stanzas[0].args[2] == "18"
    (tmp_path / "f.age").write_bytes(blob)
    argv = ["age", "-d", "-o", str(tmp_path / "f.out"), str(tmp_path / "f.age")]
    assert age_on_tty(argv, PASSPHRASE, prompts=1) == 0
    assert (tmp_path / "f.out").read_bytes() == b"hello"


def test_work_factor_above_the_readers_limit_is_refused() -> None:
    blob = encrypt(b"data", work_factor=12)
    with pytest.raises(DecryptionError, match="work factor"):
        AgeReader(io.BytesIO(blob), passphrase=Secret(PASSPHRASE), max_scrypt_work_factor=11)
    assert decrypt(blob) == b"data"


def test_plaintext_and_passphrase_never_appear_in_output() -> None:
    marker = b"PLAINTEXT-MARKER-0123456789"
    blob = encrypt(marker * 5000)
    assert marker not in blob
    assert PASSPHRASE.encode() not in blob


def test_passphrase_rules() -> None:
    with pytest.raises(ValueError, match="not both") as info:
        AgeWriter(io.BytesIO(), recipients=["age1x"], passphrase=Secret(PASSPHRASE))
    assert PASSPHRASE not in str(info.value)
    with pytest.raises(ValueError, match="empty"):
        AgeWriter(io.BytesIO(), passphrase=Secret(""))
    with pytest.raises(TypeError, match="Secret"):
        AgeWriter(io.BytesIO(), passphrase=PASSPHRASE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="work factor"):
        AgeWriter(io.BytesIO(), passphrase=Secret(PASSPHRASE), scrypt_work_factor=0)
    with pytest.raises(ValueError, match="nothing to encrypt"):
        AgeWriter(io.BytesIO())
