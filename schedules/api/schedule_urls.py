"""Routes for schedule (filled in by its module)."""

urlpatterns: list = []
