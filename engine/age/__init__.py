"""age v1 file encryption (https://age-encryption.org/v1, C2SP age spec) for
streaming backup archives: X25519 recipients and scrypt passphrases, built on
the `cryptography` package. Files written here decrypt with the `age` CLI and
the other way round, so an operator can restore without this software."""

from engine.age.keys import (
    generate_identity,
    parse_identity_file,
    recipient_from_identity,
)
from engine.age.reader import AgeReader
from engine.age.stream import is_age_file
from engine.age.writer import AgeWriter

__all__ = [
    "AgeReader",
    "AgeWriter",
    "generate_identity",
    "is_age_file",
    "parse_identity_file",
    "recipient_from_identity",
]
