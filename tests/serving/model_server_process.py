"""A real `manage.py serve_model` process on the test database, for the `openai` backend tests.

``model_serving`` starts it on a free port (``tests.conversations.live_server.server_process``)
and yields its base URL once ``/v1/models`` answers. The tests using it need
``django_db(transaction=True)``: the server sees only committed rows. ``slow=True`` runs it
through this module as a script instead, which first makes every decoding step take 50 ms and
the model never pick its end-of-turn token, so that a reply lasts seconds (GENERATION_MAX_NEW_
TOKENS) and a test can leave in the middle of it.

Run as a script: ``python -m tests.serving.model_server_process <serve_model arguments>``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conversations.live_server import server_process

STEP_SECONDS = 0.05


@contextmanager
def model_serving(
    log_path: Path,
    *,
    slow: bool = False,
    env: dict[str, str] | None = None,
    options: tuple[str, ...] = (),
) -> Iterator[str]:
    """``manage.py serve_model`` on a free port; yields its base URL (ending in /v1)."""
    program = ["-m", "tests.serving.model_server_process"] if slow else ["manage.py"]
    args = [*program, "serve_model", "--host", "127.0.0.1", "--port", "{port}", *options]
    with server_process(args, "/v1/models", log_path, env) as (url, _):
        yield f"{url}/v1"


def _run_slowly() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    from serving import chat_template, engine

    real_step = engine._Batch.step

    def slow_step(self: engine._Batch):
        time.sleep(STEP_SECONDS)
        return real_step(self)

    engine._Batch.step = slow_step
    chat_template.stop_ids = lambda model, tokenizer: frozenset()
    call_command(*sys.argv[1:])


if __name__ == "__main__":
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings")
    _run_slowly()
