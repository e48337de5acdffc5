"""Schedules API: schedules, retention preview, notifications."""
