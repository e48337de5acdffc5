"""Where archives live: local filesystem, S3, and an in-memory fake for tests.
Never imports Django or Celery."""
