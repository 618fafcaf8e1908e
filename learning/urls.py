from django.urls import path

from learning import api

app_name = "learning"

urlpatterns = [
    path("runs/", api.training_runs, name="training-runs"),
    path("runs/<int:run_id>/", api.training_run, name="training-run"),
    path("status/", api.learning_status, name="status"),
]
