"""Admin: notifications."""
