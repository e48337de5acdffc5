"""Restore drills: prove on a schedule that a snapshot restores (issue 17)."""
