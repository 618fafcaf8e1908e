"""How well a model answers the corpus: greedy replies checked for each intent's facts.

A reply counts as correct when it contains every fact of the question's intent
(case-insensitive). On ``questions`` this measures what was learned; on ``eval_questions``
(never trained on) how well it carries over to paraphrases.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import torch

from learning.starter.corpus import Intent
from learning.starter.tokenizer import chat_ids

QuestionSet = Literal["questions", "eval_questions"]


def reply_is_correct(reply: str, facts: Iterable[str]) -> bool:
    lowered = reply.lower()
    return all(fact.lower() in lowered for fact in facts)


@torch.inference_mode()
def greedy_continuations(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 96,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> list[str]:
    """Greedy replies to chat-template prompts (token ids), batched with left padding
    (rotary positions are relative)."""
    was_training = model.training
    model.eval()
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    replies: list[str] = []
    for start in range(0, len(prompts), batch_size):
        chunk = [list(p) for p in prompts[start : start + batch_size]]
        width = max(len(p) for p in chunk)
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
        output = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad_id,
        )
        for row in output[:, width:].tolist():
            replies.append(tokenizer.decode(row, skip_special_tokens=True))
    model.train(was_training)
    return replies


def greedy_replies(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str],
    *,
    max_new_tokens: int = 96,
    batch_size: int = 32,
    device: str = "cpu",
) -> list[str]:
    """Greedy single-turn replies to ``questions``, batched."""
    prompts = [
        chat_ids(tokenizer, [{"role": "user", "content": q}], add_generation_prompt=True)
        for q in questions
    ]
    return greedy_continuations(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        device=device,
    )


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
        reply_is_correct(reply, intent.facts)
        for reply, (_, intent) in zip(replies, pairs, strict=True)
    )
    return correct / len(pairs)
