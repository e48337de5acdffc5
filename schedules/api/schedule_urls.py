"""Routes of schedules (ids are matched loosely, checked in the selectors)."""

from django.urls import path

from schedules.api.schedule_views import ScheduleDetailView, ScheduleListView, ScheduleRunView

urlpatterns = [
    path("schedules", ScheduleListView.as_view(), name="schedules"),
    path("schedules/<str:schedule_id>", ScheduleDetailView.as_view(), name="schedule"),
    path("schedules/<str:schedule_id>/run", ScheduleRunView.as_view(), name="schedule-run"),
]
