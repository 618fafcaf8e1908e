"""How well a model answers the corpus: greedy replies checked for each intent's facts.

A reply counts as correct when it states every fact of the question's intent
(``chat_template.states_facts``). On ``questions`` this measures what was learned; on
``eval_questions`` (never trained on) how well it carries over to paraphrases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from knowledge.demo.corpus import Intent
from serving.chat_template import greedy_replies, states_facts

QuestionSet = Literal["questions", "eval_questions"]


def intent_accuracy(
    model: Any,
    tokenizer: Any,
    intents: Sequence[Intent],
    which: QuestionSet = "questions",
    *,
    device: str = "cpu",
) -> float:
    """Share of the intents' ``which`` questions whose greedy reply has all the intent's facts."""
    pairs = [(question, intent) for intent in intents for question in getattr(intent, which)]
    if not pairs:
        return 0.0
    replies = greedy_replies(model, tokenizer, [q for q, _ in pairs], device=device)
    correct = sum(
        states_facts(reply, intent.facts) for reply, (_, intent) in zip(replies, pairs, strict=True)
    )
    return correct / len(pairs)
