"""Retention data: what the base model knew, from the starter corpus.

The gate measures perplexity on a fixed slice (the first training question of every intent
with its answer); replay draws from the rest, so the gate never scores data the run replayed.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

CORPUS_PATH = Path(__file__).resolve().parent / "starter" / "corpus.json"


@cache
def load_corpus(path: Path = CORPUS_PATH) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _pairs(which: str, path: Path = CORPUS_PATH) -> list[tuple[str, str]]:
    pairs = []
    for intent in load_corpus(path)["intents"]:
        questions = intent["questions"]
        chosen = questions[:1] if which == "gate" else questions[1:]
        pairs.extend((question, intent["answer"]) for question in chosen)
    return pairs


def gate_retention_pairs(path: Path = CORPUS_PATH) -> list[tuple[str, str]]:
    """(question, answer) pairs the gate scores: one per intent."""
    return _pairs("gate", path)


def replay_pairs(path: Path = CORPUS_PATH) -> list[tuple[str, str]]:
    """(question, answer) pairs a run may replay to remember the base corpus."""
    return _pairs("replay", path)
