"""Feedback that would overwrite a golden answer is kept out of training.

Golden examples are the answers staff promised to keep (the gate's golden set). The gate
already rejects a candidate whose golden answers broke, but then everything else that round
taught is thrown away with it, round after round, as long as the bad feedback keeps coming (a
group of customers rewarding "full refund, no questions asked", say). So before training, each
example is checked against the parent model: where the parent answers its prompt with every
required fact of a golden example, an example that rates a reply without those facts up, or
one with them down, would teach the model to break that promise, and it is left out. The
feedback rows stay as they are, for staff to review; when a policy really changes, update its
golden example.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from knowledge.faithfulness import NUMBER
from learning.evaluation import GoldenCase
from learning.examples import ExampleSet
from serving.chat_template import greedy_continuations, states_facts


def active_golden_cases(*, grounded: bool = False) -> list[GoldenCase]:
    """The active golden examples; ``grounded``: asked with the expected answer as the article
    (for a base tuned to answer from articles)."""
    from learning.models import GoldenExample

    return [
        GoldenCase(g.question, g.expected_answer, tuple(g.required_facts or ()), grounded)
        for g in GoldenExample.objects.filter(is_active=True)
    ]


def knowledge_golden_cases(limit: int) -> list[GoldenCase]:
    """Golden cases the knowledge base itself promises, never empty while it has an article:
    an active article's first example question, asked with the article shown, expects the
    article's text, and its numbers (a price, a number of days) are the required facts. With
    more articles than ``limit``, an even spread of them (by id: the same ones each run, until
    the articles change). Read at every run, so they follow every edit."""
    from knowledge.models import KnowledgeArticle, question_lines

    articles = [
        (text, questions[0])
        for text, example_questions in KnowledgeArticle.objects.filter(is_active=True)
        .order_by("id")
        .values_list("text", "example_questions")
        if (questions := question_lines(example_questions))
    ]
    if limit <= 0 or not articles:
        return []
    step = max(1, len(articles) / limit)
    chosen = [articles[int(index * step)] for index in range(min(limit, len(articles)))]
    return [
        GoldenCase(question, text, tuple(dict.fromkeys(NUMBER.findall(text)))[:3], True)
        for text, question in chosen
    ]


def drop_golden_overrides(
    model: Any,
    tokenizer: Any,
    examples: ExampleSet,
    cases: Sequence[GoldenCase],
    *,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Remove from ``examples.train`` the examples that contradict a golden answer.

    Where the parent's reply to an example's prompt states a golden example's required facts,
    a desirable example must state them too, and an undesirable one must not (rating the
    promised answer down would push it away just as well). Returns how many were removed (also
    stored as ``examples.counts["protected"]``; the ``train`` count is updated).
    """
    promises = [case.required_facts for case in cases if case.required_facts]
    dropped: set[int] = set()
    if promises and examples.train:
        prompts = list(dict.fromkeys(example.prompt_ids for example in examples.train))
        replies = dict(
            zip(
                prompts,
                greedy_continuations(model, tokenizer, prompts, device=device, progress=progress),
                strict=True,
            )
        )
        for index, example in enumerate(examples.train):
            kept = [facts for facts in promises if states_facts(replies[example.prompt_ids], facts)]
            if not kept:
                continue
            taught = tokenizer.decode(example.reply_ids, skip_special_tokens=True)
            if any(states_facts(taught, facts) != (example.label > 0) for facts in kept):
                dropped.add(index)
    examples.train = [e for i, e in enumerate(examples.train) if i not in dropped]
    examples.counts["protected"] = len(dropped)
    examples.counts["train"] = len(examples.train)
    return len(dropped)
