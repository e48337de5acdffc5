"""The REST API under /api/v1/backup/: thin DRF views over services and selectors."""
