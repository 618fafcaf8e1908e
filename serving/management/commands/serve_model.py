"""`manage.py serve_model`: the model behind an OpenAI-compatible API (serving.model_server)."""

from __future__ import annotations

import os
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from serving import model_server


class Command(BaseCommand):
    help = (
        "Serve the model versions over an OpenAI-compatible HTTP API (GET /v1/models, "
        "POST /v1/chat/completions, streaming with server-sent events), so that several web "
        "processes with GENERATION_BACKEND=openai share one model process and its batches. "
        "The model a request names is a ModelVersion's name; the engine's settings (ENGINE_*, "
        "GENERATION_*) apply. With GENERATION_SERVER_API_KEY set, requests must send it as "
        "'Authorization: Bearer <key>'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host",
            default=settings.GENERATION_SERVE_HOST,
            help="address to listen on (default GENERATION_SERVE_HOST: %(default)s)",
        )
        parser.add_argument(
            "--port",
            type=int,
            default=settings.GENERATION_SERVE_PORT,
            help="port to listen on (default GENERATION_SERVE_PORT: %(default)s)",
        )
        parser.add_argument(
            "--any-version",
            action="store_true",
            help=(
                "serve every registered version a request names, rejected and retired ones "
                "included (by default only the active version and those ready)"
            ),
        )
        parser.add_argument(
            "--if-configured",
            action="store_true",
            help=(
                "serve only when GENERATION_BACKEND=openai and GENERATION_SERVER_URL points at "
                "this host and port; otherwise idle quietly until stopped (the Procfile's "
                "`model` process: honcho stops every process when one exits)"
            ),
        )

    def handle(self, *args: object, **options: object) -> None:
        host, port = str(options["host"]), int(options["port"])
        model_server.serve_any_version(bool(options["any_version"]))
        if options["if_configured"] and not model_server.serves_locally(host, port):
            self.stdout.write(
                "serve_model: not needed (GENERATION_BACKEND is not openai, or "
                "GENERATION_SERVER_URL is another server); idling."
            )
            self.stdout.flush()
            _idle()
        model_server.run(host, port)


def _idle() -> None:
    """Wait for the process manager's signal, in a `sleep` that holds almost no memory."""
    try:
        os.execvp("sleep", ["sleep", "infinity"])
    except OSError:  # no GNU sleep: wait in Python
        while True:
            signal.pause()
