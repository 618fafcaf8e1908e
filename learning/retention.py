"""Retention data: what the base model knew, from the starter corpus.

The gate measures perplexity on the answers to paraphrases the starter model never trained on
(``eval_questions``; the first training question where an intent has none): a memorised
training question has a perplexity of ~1.0 that says little about what the model knows. Replay
draws from the training questions but the first, so the gate never scores data a run replayed.
``LEARNING_RETENTION_CORPUS`` may name another corpus file in the same format (read by
``learning.starter.corpus.load_corpus``, as the starter corpus is): the company's
current FAQ, without answers that a policy change made wrong. A starter model built on part of
the corpus (``max_intents`` in its metadata, as the tiny test
models are) knew only those intents, so only those count as what it must retain.
"""

from __future__ import annotations

from pathlib import Path

from learning.checkpoints import read_metadata
from learning.starter.corpus import CORPUS_PATH, load_corpus


def known_intent_count(checkpoint_path: str | Path) -> int | None:
    """How many corpus intents a starter checkpoint was trained on (None: all, or not a starter)."""
    config = read_metadata(checkpoint_path).get("config") or {}
    count = config.get("max_intents")
    return int(count) if count else None


def retention_corpus_path() -> Path:
    from django.conf import settings

    configured = getattr(settings, "LEARNING_RETENTION_CORPUS", "")
    return Path(configured) if configured else CORPUS_PATH


def _pairs(which: str, path: Path | None, max_intents: int | None) -> list[tuple[str, str]]:
    pairs = []
    for intent in load_corpus(path or retention_corpus_path()).intents[:max_intents]:
        if which == "replay":
            chosen = intent.questions[1:]
        else:  # paraphrases never trained on, where the corpus has them
            chosen = intent.eval_questions or intent.questions[:1]
        pairs.extend((question, intent.answer) for question in chosen)
    return pairs


def gate_retention_pairs(
    path: Path | None = None, *, max_intents: int | None = None
) -> list[tuple[str, str]]:
    """(question, answer) pairs the gate scores: the held-out paraphrases of every intent."""
    return _pairs("gate", path, max_intents)


def replay_pairs(
    path: Path | None = None, *, max_intents: int | None = None
) -> list[tuple[str, str]]:
    """(question, answer) pairs a run may replay to remember the base corpus."""
    return _pairs("replay", path, max_intents)
