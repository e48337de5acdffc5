"""The operator's console: the admin's dashboard and actions (issue 16)."""
