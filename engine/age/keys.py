"""age keys and the two native ways to wrap a file key: X25519 recipients
(`age1...` / `AGE-SECRET-KEY-1...`) and a passphrase (scrypt).

Error messages never quote a key string: someone may paste a secret key where
a recipient belongs, and the message may end up in a log."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from engine.age import bech32
from engine.age.header import Stanza, b64decode_raw, b64encode_raw, hkdf_sha256
from engine.errors import DecryptionError
from engine.secret import Secret

IDENTITY_HRP = "AGE-SECRET-KEY-"
RECIPIENT_HRP = "age"
FILE_KEY_SIZE = 16
_X25519_INFO = b"age-encryption.org/v1/X25519"
_SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
_ZERO_NONCE = bytes(12)
_WRAPPED_SIZE = FILE_KEY_SIZE + 16  # file key + Poly1305 tag
_WORK_FACTOR_RE = re.compile(r"[1-9][0-9]*")
MIN_SCRYPT_WORK_FACTOR = 1
MAX_SCRYPT_WORK_FACTOR = 30  # 2^30 * 1 KiB of scrypt memory is already 1 TiB


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _encode_identity(raw: bytes) -> str:
    return bech32.encode(IDENTITY_HRP, raw).upper()


def generate_identity() -> tuple[str, str]:
    """A new X25519 key pair: (identity "AGE-SECRET-KEY-1...", recipient "age1...")."""
    raw = os.urandom(32)
    identity = _encode_identity(raw)
    return identity, recipient_from_identity(identity)


def recipient_from_identity(identity: str) -> str:
    """The public `age1...` recipient of an `AGE-SECRET-KEY-1...` identity."""
    key = parse_identity(identity)
    return bech32.encode(RECIPIENT_HRP, _raw_public(key.public_key()))


def parse_identity(identity: str, label: str = "identity") -> X25519PrivateKey:
    """Raises ValueError naming what is wrong, never quoting the key."""
    if not isinstance(identity, str):
        raise ValueError(f"{label} must be a string")
    text = identity.strip()
    if text.startswith("age1"):
        raise ValueError(f"{label} is a recipient (public key age1...), not a secret identity")
    try:
        hrp, raw = bech32.decode(text)
    except bech32.Bech32Error as exc:
        raise ValueError(f"{label} is not a valid age identity: {exc}") from None
    # age writes identities upper-case and compares the prefix case-sensitively.
    if hrp != IDENTITY_HRP:
        raise ValueError(f"{label} is not an age X25519 identity (expected AGE-SECRET-KEY-1...)")
    if len(raw) != 32:
        raise ValueError(f"{label} has the wrong key length")
    return X25519PrivateKey.from_private_bytes(raw)


def parse_recipient(recipient: str, label: str = "recipient") -> X25519PublicKey:
    """Raises ValueError naming what is wrong, never quoting the key."""
    if not isinstance(recipient, str):
        raise ValueError(f"{label} must be a string")
    text = recipient.strip()
    if text.upper().startswith("AGE-SECRET-KEY-"):
        raise ValueError(
            f"{label} is a secret identity (AGE-SECRET-KEY-...), not a recipient: "
            "pass its public key (age1...) instead"
        )
    try:
        hrp, raw = bech32.decode(text)
    except bech32.Bech32Error as exc:
        raise ValueError(f"{label} is not a valid age recipient: {exc}") from None
    if hrp != RECIPIENT_HRP:
        # Public prefixes like age1pq / age1tag / ssh are safe to name.
        raise ValueError(
            f"{label} has type prefix {hrp[:20]!r}: only X25519 recipients (age1...) are supported"
        )
    if len(raw) != 32:
        raise ValueError(f"{label} has the wrong key length")
    return X25519PublicKey.from_public_bytes(raw)


def parse_identity_file(text: str) -> list[str]:
    """The identities in an `age-keygen` key file: non-empty lines not
    starting with '#'."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def x25519_wrap(file_key: bytes, recipient: X25519PublicKey) -> Stanza:
    ephemeral = X25519PrivateKey.generate()
    share = _raw_public(ephemeral.public_key())
    shared = ephemeral.exchange(recipient)
    wrap_key = hkdf_sha256(shared, share + _raw_public(recipient), _X25519_INFO)
    body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
    return Stanza(("X25519", b64encode_raw(share)), body)


def _scrypt_key(passphrase: Secret, salt: bytes, work_factor: int) -> bytes:
    kdf = Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=1 << work_factor, r=8, p=1)
    return kdf.derive(passphrase.reveal().encode("utf-8"))


def check_work_factor(work_factor: int) -> None:
    if isinstance(work_factor, bool) or not isinstance(work_factor, int):
        raise ValueError("scrypt work factor must be an integer (log2 of N)")
    if not MIN_SCRYPT_WORK_FACTOR <= work_factor <= MAX_SCRYPT_WORK_FACTOR:
        raise ValueError(
            f"scrypt work factor must be between {MIN_SCRYPT_WORK_FACTOR} and "
            f"{MAX_SCRYPT_WORK_FACTOR} (log2 of N)"
        )


def scrypt_wrap(file_key: bytes, passphrase: Secret, work_factor: int) -> Stanza:
    check_work_factor(work_factor)
    salt = os.urandom(16)
    wrap_key = _scrypt_key(passphrase, salt, work_factor)
    body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
    return Stanza(("scrypt", b64encode_raw(salt), str(work_factor)), body)


def _open_body(wrap_key: bytes, body: bytes) -> bytes | None:
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, body, None)
    except InvalidTag:
        return None


def _x25519_unwrap(stanza: Stanza, identity: X25519PrivateKey) -> bytes | None:
    if len(stanza.args) != 2:
        raise DecryptionError("malformed X25519 stanza: wrong number of arguments")
    try:
        share = b64decode_raw(stanza.args[1])
    except ValueError:
        raise DecryptionError("malformed X25519 stanza: invalid ephemeral share") from None
    # Length checks before decrypting, as the spec asks (partitioning oracles).
    if len(share) != 32 or len(stanza.body) != _WRAPPED_SIZE:
        raise DecryptionError("malformed X25519 stanza: wrong share or body length")
    try:
        shared = identity.exchange(X25519PublicKey.from_public_bytes(share))
    except ValueError:
        # The all-zero shared secret (a low-order share): the spec says abort.
        raise DecryptionError("invalid X25519 stanza: low-order ephemeral share") from None
    recipient = _raw_public(identity.public_key())
    return _open_body(hkdf_sha256(shared, share + recipient, _X25519_INFO), stanza.body)


def _scrypt_unwrap(stanza: Stanza, passphrase: Secret, max_work_factor: int) -> bytes:
    if len(stanza.args) != 3 or not _WORK_FACTOR_RE.fullmatch(stanza.args[2]):
        raise DecryptionError("malformed scrypt stanza")
    try:
        salt = b64decode_raw(stanza.args[1])
    except ValueError:
        raise DecryptionError("malformed scrypt stanza: invalid salt") from None
    if len(salt) != 16 or len(stanza.body) != _WRAPPED_SIZE:
        raise DecryptionError("malformed scrypt stanza: wrong salt or body length")
    work_factor = int(stanza.args[2]) if len(stanza.args[2]) <= 3 else max_work_factor + 1
    if work_factor > max_work_factor:
        raise DecryptionError(
            f"scrypt work factor of the file is above the limit 2^{max_work_factor}"
        )
    file_key = _open_body(_scrypt_key(passphrase, salt, work_factor), stanza.body)
    if file_key is None:
        raise DecryptionError("wrong passphrase (or the header was modified)")
    return file_key


def unwrap_file_key(
    stanzas: Sequence[Stanza],
    identities: Sequence[X25519PrivateKey],
    passphrase: Secret | None,
    max_work_factor: int,
) -> bytes:
    """The file key, from the first stanza one of our keys opens. Stanzas of
    other types (SSH, plugins, grease) are ignored, as the spec requires."""
    if any(s.args[0] == "scrypt" for s in stanzas):
        if len(stanzas) != 1:
            raise DecryptionError("invalid age header: an scrypt stanza must be the only stanza")
        if passphrase is None:
            raise DecryptionError("the file is encrypted with a passphrase; none was given")
        return _scrypt_unwrap(stanzas[0], passphrase, max_work_factor)
    x25519 = [s for s in stanzas if s.args[0] == "X25519"]
    if not x25519:
        raise DecryptionError("the file has no X25519 or scrypt stanza (another key type?)")
    if not identities:
        raise DecryptionError("the file is encrypted to X25519 recipients; no identity was given")
    for identity in identities:
        for stanza in x25519:
            file_key = _x25519_unwrap(stanza, identity)
            if file_key is not None:
                return file_key
    raise DecryptionError("no identity matches a recipient of this file (wrong key?)")
