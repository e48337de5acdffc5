"""Archive format v1: one tar stream holding backup.json, volumes/, databases/,
config/ and, last, manifest.json. See layout.py and manifest.py."""
