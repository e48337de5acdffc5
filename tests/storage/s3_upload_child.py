"""A separate process that uploads one file to S3 with a JSON-file ledger:
the kill -9 tests kill it in the middle and start another one to resume.

Reads its settings as JSON on stdin (never in its arguments: they hold the
secret key) and prints "uploaded <sha256>" when the object is complete."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from storage.s3 import S3Storage
from storage.s3_config import S3Config
from storage.s3_ledger import JsonFileLedger


def main() -> int:
    settings = json.load(sys.stdin)
    storage = S3Storage(S3Config(**settings["config"]))
    ledger = JsonFileLedger(Path(settings["ledger"]))
    info = storage.upload_file(Path(settings["path"]), settings["key"], ledger=ledger)
    head = storage.head(info.key)
    print(f"uploaded {head['Metadata']['sha256']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
