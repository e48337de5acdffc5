"""Routes for notification (filled in by its module)."""

urlpatterns: list = []
