"""Retention data: what the base model knew, from the starter corpus.

The gate measures perplexity on a fixed slice (the first training question of every intent
with its answer); replay draws from the rest, so the gate never scores data the run replayed.
A starter model built on part of the corpus (``max_intents`` in its metadata, as the tiny test
models are) knew only those intents, so only those count as what it must retain.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

CORPUS_PATH = Path(__file__).resolve().parent / "starter" / "corpus.json"


@cache
def load_corpus(path: Path = CORPUS_PATH) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def known_intent_count(checkpoint_path: str | Path) -> int | None:
    """How many corpus intents a starter checkpoint was trained on (None: all, or not a starter)."""
    metadata = Path(checkpoint_path) / "metadata.json"
    if not metadata.exists():
        return None
    config = json.loads(metadata.read_text(encoding="utf-8")).get("config") or {}
    count = config.get("max_intents")
    return int(count) if count else None


def _pairs(which: str, path: Path, max_intents: int | None) -> list[tuple[str, str]]:
    pairs = []
    for intent in load_corpus(path)["intents"][:max_intents]:
        questions = intent["questions"]
        chosen = questions[:1] if which == "gate" else questions[1:]
        pairs.extend((question, intent["answer"]) for question in chosen)
    return pairs


def gate_retention_pairs(
    path: Path = CORPUS_PATH, *, max_intents: int | None = None
) -> list[tuple[str, str]]:
    """(question, answer) pairs the gate scores: one per intent."""
    return _pairs("gate", path, max_intents)


def replay_pairs(
    path: Path = CORPUS_PATH, *, max_intents: int | None = None
) -> list[tuple[str, str]]:
    """(question, answer) pairs a run may replay to remember the base corpus."""
    return _pairs("replay", path, max_intents)
