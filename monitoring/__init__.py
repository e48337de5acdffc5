"""Metrics for Prometheus and structured logs (issue 16)."""
