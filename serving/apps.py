from django.apps import AppConfig


class ServingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "serving"
    verbose_name = "Serving"

    def ready(self) -> None:
        from learning.signals import version_activated, version_activating
        from serving import activation

        version_activating.connect(activation.load_before_activation, dispatch_uid="serving.load")
        version_activated.connect(activation.after_activation, dispatch_uid="serving.after")
