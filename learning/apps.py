from django.apps import AppConfig


class LearningConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "learning"
    verbose_name = "Learning"

    def ready(self) -> None:
        from knowledge.signals import knowledge_imported
        from learning.knowledge_runs import tune_after_import

        # After knowledge's own receiver (the calibration): apps are ready in INSTALLED_APPS
        # order, and receivers run in the order they connected.
        knowledge_imported.connect(tune_after_import, dispatch_uid="tune_on_import")
