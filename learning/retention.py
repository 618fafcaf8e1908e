"""Retention data: what the base model knew, from the starter corpus.

The gate measures perplexity on the answers to paraphrases the starter model never trained on
(``eval_questions``; the first training question where an intent has none): a memorised
training question has a perplexity of ~1.0 that says little about what the model knows. Replay
draws from the training questions but the first, so the gate never scores data a run replayed.
``LEARNING_RETENTION_CORPUS`` may name another corpus file in the same format (read by
``knowledge.demo.corpus.load_corpus``, as the starter corpus is): the company's
current FAQ, without answers that a policy change made wrong. A starter model built on part of
the corpus (``max_intents`` in its metadata, as the tiny test
models are) knew only those intents, so only those count as what it must retain.

A base tuned to answer from knowledge-base articles (``learning.grounded_tuning``; ``is_grounded``)
never sees a question without its article: there the gate and the replay show each question
with its intent's answer as the one article (``retention_prompts``), as the chat prompts it.
Without it the gate would score the grounded model on answering from memory, which it was
never tuned for (SmolLM2's perplexity of 41.6 there), and the replay would teach that instead
of what it serves.
"""

from __future__ import annotations

from pathlib import Path

from knowledge.demo.corpus import CORPUS_PATH, load_corpus
from knowledge.prompt import Turn, grounded_turns
from knowledge.services import intent_title
from serving.checkpoints import read_metadata


def known_intent_count(checkpoint_path: str | Path) -> int | None:
    """How many corpus intents a starter checkpoint was trained on (None: all, or not a starter)."""
    config = read_metadata(checkpoint_path).get("config") or {}
    count = config.get("max_intents")
    return int(count) if count else None


def is_grounded(checkpoint_path: str | Path) -> bool:
    """Whether a checkpoint was tuned to answer from articles (``learning.grounded_tuning``)."""
    return "tuning_config" in read_metadata(checkpoint_path)


def retention_corpus_path() -> Path:
    from django.conf import settings

    configured = getattr(settings, "LEARNING_RETENTION_CORPUS", "")
    return Path(configured) if configured else CORPUS_PATH


def _pairs(which: str, path: Path | None, max_intents: int | None) -> list[tuple[str, str]]:
    return [(question, answer) for question, answer, _ in _items(which, path, max_intents)]


def _items(which: str, path: Path | None, max_intents: int | None) -> list[tuple[str, str, str]]:
    """(question, answer, intent name) of each intent's replay or gate questions."""
    items = []
    for intent in load_corpus(path or retention_corpus_path()).intents[:max_intents]:
        if which == "replay":
            chosen = intent.questions[1:]
        else:  # paraphrases never trained on, where the corpus has them
            chosen = intent.eval_questions or intent.questions[:1]
        items.extend((question, intent.answer, intent.name) for question in chosen)
    return items


def retention_prompts(
    which: str, *, grounded: bool, path: Path | None = None, max_intents: int | None = None
) -> list[tuple[list[Turn], str]]:
    """(prompt turns, answer) of the ``"gate"`` or ``"replay"`` questions: the question alone,
    or (``grounded``) after the articles' system turn showing the intent's answer."""
    prompts = []
    for question, answer, name in _items(which, path, max_intents):
        turns: list[Turn] = [{"role": "user", "content": question}]
        if grounded:
            turns = grounded_turns(turns, [{"title": intent_title(name), "text": answer}])
        prompts.append((turns, answer))
    return prompts


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
