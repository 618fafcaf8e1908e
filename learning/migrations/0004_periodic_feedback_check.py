"""Create the periodic "retrain when enough new feedback" check (editable in the admin)."""

from django.db import migrations

TASK_NAME = "Retrain when enough new feedback"


def create_check(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_15_minutes, _ = IntervalSchedule.objects.get_or_create(every=15, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "learning.tasks.check_for_new_feedback",
            "interval": every_15_minutes,
            "description": (
                "Queues a training run when at least LEARNING_MIN_NEW_FEEDBACK pieces of usable "
                "feedback are new, and marks runs whose worker died as failed."
            ),
        },
    )


def remove_check(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("learning", "0003_training_run_worker"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_check, remove_check)]
