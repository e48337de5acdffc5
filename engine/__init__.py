"""The backup pipeline: discovery, archive format, compression, encryption,
checksums, database dumps, restore, verify. Never imports Django or Celery."""
