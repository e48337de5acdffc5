"""Schedules: when backups run, retention and failure notifications."""
