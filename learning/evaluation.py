"""What the gate measures on a model: feedback margin, retention perplexity, the golden set."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from knowledge.prompt import Turn, grounded_turns
from learning.examples import TrainingExample, encode_turn
from learning.losses import collate, token_logprobs
from serving.chat_template import greedy_continuations, padding_id, prompt_ids, states_facts

Encoded = tuple[tuple[int, ...], tuple[int, ...], int]


@dataclass(frozen=True)
class GoldenCase:
    question: str
    expected_answer: str
    required_facts: tuple[str, ...]
    grounded: bool = False  # asked with the expected answer shown as the article

    @property
    def turns(self) -> list[Turn]:
        """The prompt: the question, after the article's system turn when ``grounded``.

        A grounded model answers from the article it is shown; the promise it must keep is to
        state the expected answer's facts when shown them, not to recite them from memory.
        """
        turns: list[Turn] = [{"role": "user", "content": self.question}]
        if not self.grounded:
            return turns
        return grounded_turns(turns, [{"title": self.question, "text": self.expected_answer}])


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], *, max_tokens: int) -> list[Encoded]:
    """(question, answer) pairs as single-turn (prompt ids, reply ids, +1) triples."""
    return encode_prompts(
        tokenizer,
        [([{"role": "user", "content": question}], answer) for question, answer in pairs],
        max_tokens=max_tokens,
    )


def encode_prompts(
    tokenizer, prompts: Sequence[tuple[Sequence[Turn], str]], *, max_tokens: int
) -> list[Encoded]:
    """(prompt turns, answer) pairs as (prompt ids, reply ids, +1) triples."""
    return [
        (*encode_turn(tokenizer, turns, answer, max_tokens=max_tokens), 1)
        for turns, answer in prompts
    ]


@torch.no_grad()
def reply_logprob_sums(
    model: torch.nn.Module,
    encoded: Sequence[Encoded],
    *,
    pad_id: int,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ log p over each reply's tokens, and each reply's token count."""
    was_training = model.training
    model.eval()
    sums, counts = [], []
    for start in range(0, len(encoded), batch_size):
        batch = collate(encoded[start : start + batch_size], pad_id).to(device)
        logps, mask = token_logprobs(model, batch)
        sums.append((logps * mask).sum(dim=1).float().cpu())
        counts.append(mask.sum(dim=1).cpu())
    model.train(was_training)
    if not sums:
        return torch.zeros(0), torch.zeros(0)
    return torch.cat(sums), torch.cat(counts)


def perplexity(model, encoded: Sequence[Encoded], *, pad_id: int, device="cpu") -> float:
    """exp(mean negative log-likelihood per reply token)."""
    sums, counts = reply_logprob_sums(model, encoded, pad_id=pad_id, device=device)
    total = float(counts.sum())
    return math.exp(-float(sums.sum()) / total) if total else float("nan")


def feedback_margin(
    model, examples: Sequence[TrainingExample], *, pad_id: int, device="cpu"
) -> float | None:
    """Mean per-token log-likelihood of desirable replies minus that of undesirable ones.

    With only one kind present, the margin is that kind's mean (negated for undesirable), so
    a model that raises good replies or lowers bad ones still scores higher.
    """
    if not examples:
        return None
    encoded = [(e.prompt_ids, e.reply_ids, e.label) for e in examples]
    sums, counts = reply_logprob_sums(model, encoded, pad_id=pad_id, device=device)
    per_token = sums / counts.clamp(min=1)
    labels = torch.tensor([e.label for e in examples])
    good, bad = per_token[labels > 0], per_token[labels < 0]
    good_mean = float(good.mean()) if len(good) else 0.0
    bad_mean = float(bad.mean()) if len(bad) else 0.0
    return good_mean - bad_mean


def golden_metrics(
    model, tokenizer, cases: Sequence[GoldenCase], *, max_tokens: int, device="cpu"
) -> dict[str, float | int]:
    """Perplexity of the expected answers, and the share of replies stating the required facts."""
    if not cases:
        return {"golden_count": 0}
    encoded = encode_prompts(
        tokenizer, [(c.turns, c.expected_answer) for c in cases], max_tokens=max_tokens
    )
    metrics: dict[str, float | int] = {
        "golden_count": len(cases),
        "golden_perplexity": perplexity(
            model, encoded, pad_id=padding_id(tokenizer), device=device
        ),
    }
    with_facts = [c for c in cases if c.required_facts]
    if with_facts:
        prompts = [prompt_ids(tokenizer, c.turns) for c in with_facts]
        replies = greedy_continuations(model, tokenizer, prompts, device=device)
        correct = sum(
            states_facts(reply, c.required_facts)
            for reply, c in zip(replies, with_facts, strict=True)
        )
        metrics["golden_fact_accuracy"] = correct / len(with_facts)
    return metrics


def measure_model(
    model,
    tokenizer,
    heldout: Sequence[TrainingExample],
    *,
    retention: Sequence[Encoded],
    golden_cases: Sequence[GoldenCase],
    max_tokens: int,
) -> dict[str, float | int | None]:
    """The gate's metrics for one model: held-out feedback, retention, golden set.

    ``retention`` is the encoded retention corpus; the run encodes it and reads the golden set
    once, so that the parent and the candidate are measured on the same questions.
    """
    device = next(model.parameters()).device
    pad_id = padding_id(tokenizer)
    metrics: dict[str, float | int | None] = {
        "heldout_count": len(heldout),
        "heldout_margin": feedback_margin(model, heldout, pad_id=pad_id, device=device),
        "retention_perplexity": perplexity(model, retention, pad_id=pad_id, device=device),
    }
    metrics.update(
        golden_metrics(model, tokenizer, golden_cases, max_tokens=max_tokens, device=device)
    )
    return metrics
