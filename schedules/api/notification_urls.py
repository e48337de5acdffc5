"""Routes for notifications: an app's targets, a test send, the sent list."""

from django.urls import path

from schedules.api.notification_views import (
    AppNotificationsView,
    NotificationListView,
    NotificationTestView,
)

urlpatterns: list = [
    path(
        "apps/<str:app_id>/notifications", AppNotificationsView.as_view(), name="app-notifications"
    ),
    path("notifications/test", NotificationTestView.as_view(), name="notifications-test"),
    path("notifications", NotificationListView.as_view(), name="notifications"),
]
