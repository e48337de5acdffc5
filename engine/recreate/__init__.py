"""Recreating an app's containers on a host where it has none (a migration)."""
