"""Create the daily "delete conversations past the retention period" task (editable in the
admin)."""

from django.db import migrations

TASK_NAME = "Delete conversations past the retention period"


def create_task(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    nightly, _ = CrontabSchedule.objects.get_or_create(
        minute="17", hour="3", day_of_week="*", day_of_month="*", month_of_year="*"
    )
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "conversations.tasks.delete_expired_conversations",
            "crontab": nightly,
            "description": (
                "Deletes the conversations nobody wrote in for CHAT_RETENTION_DAYS days, with "
                "their messages and ratings (conversations/privacy.py)."
            ),
        },
    )


def remove_task(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0005_reply_guard"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_task, remove_task)]
