"""Django starts without torch: the knowledge app loads the encoder only when it encodes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import sys
import django
django.setup()
import knowledge.admin, knowledge.index, knowledge.retrieval, knowledge.services
from django.core.management import load_command_class
load_command_class("knowledge", "seed_knowledge_base")
print(sorted(name for name in ("torch", "transformers") if name in sys.modules))
"""


def test_it_imports_neither_torch_nor_transformers_until_it_encodes():
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatbot_site.settings"}
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == "[]", result.stderr
