"""The periodic "release claims whose agent left" task, and the `answer_customers` permission for
the staff users who could answer customers before it existed (new staff users do not get it)."""

from django.db import migrations

TASK_NAME = "Release claims whose agent left"


def forwards(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_5_minutes, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "conversations.tasks.release_abandoned_claims",
            "interval": every_5_minutes,
            "description": (
                "A conversation claimed by an agent who has had no inbox open for "
                "HANDOFF_CLAIM_RELEASE_MINUTES goes back to the queue."
            ),
        },
    )
    User = apps.get_model("auth", "User")
    staff = list(User.objects.filter(is_staff=True, is_superuser=False))
    if not staff:
        return
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    content_type, _ = ContentType.objects.get_or_create(
        app_label="conversations", model="conversation"
    )
    permission, _ = Permission.objects.get_or_create(
        codename="answer_customers",
        content_type=content_type,
        defaults={"name": "Can answer customers in the staff inbox"},
    )
    for user in staff:
        user.user_permissions.add(permission)


def backwards(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0007_inbox_permissions"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
