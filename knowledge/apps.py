from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "knowledge"
    verbose_name = "Knowledge base"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from knowledge.calibration import recalibrate_after_import
        from knowledge.models import BusinessProfile
        from knowledge.profile import forget_profile
        from knowledge.signals import knowledge_imported

        knowledge_imported.connect(recalibrate_after_import, dispatch_uid="recalibrate_on_import")
        # Saved in this process: read again at once (others within KNOWLEDGE_POLL_SECONDS).
        post_save.connect(forget_profile, sender=BusinessProfile, dispatch_uid="profile_saved")
        post_delete.connect(forget_profile, sender=BusinessProfile, dispatch_uid="profile_gone")
