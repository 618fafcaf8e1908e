"""Make the inference server's LoRA adapters match the database (after an outage or a restart)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from serving import served_adapters


class Command(BaseCommand):
    help = (
        "Load the active LoRA adapter version on the inference server and unload retired ones "
        "(GENERATION_BACKEND=openai with GENERATION_SERVER_LORA_RUNTIME on). Safe to repeat; "
        "run it after the server restarts, since it forgets adapters loaded at run time."
    )

    def handle(self, *args: object, **options: object) -> None:
        if not served_adapters.runtime_lora_enabled():
            raise CommandError(
                "Runtime LoRA loading is off: it needs GENERATION_BACKEND=openai and "
                "GENERATION_SERVER_LORA_RUNTIME=true."
            )
        try:
            done = served_adapters.sync_served_adapters()
        except served_adapters.InferenceServerError as error:
            raise CommandError(
                f"The inference server did not answer as expected: {error}"
            ) from error
        for line in done:
            self.stdout.write(line)
