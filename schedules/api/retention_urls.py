"""Routes for retention (filled in by its module)."""

urlpatterns: list = []
