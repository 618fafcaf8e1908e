"""Task losses L(θ) on labelled replies: SFT + unlikelihood, and KTO.

Both work on unpaired labels: +1 (desirable reply) and −1 (undesirable reply).

- ``sft_ul``: the negative log-likelihood of desirable replies, plus token-level unlikelihood
  −log(1 − p(yₜ)) on undesirable ones (Welleck et al., 2019), which pushes probability off
  each token of a bad reply without rewarding any particular replacement.
- ``kto``: Kahneman–Tversky optimization (Ethayarajh et al., 2024) with θ₀ as the reference:
  r = log πθ(y|x) − log π₀(y|x); desirable: 1 − σ(β(r − z)), undesirable: 1 − σ(β(z − r)),
  where z, the reference point, is the batch's mean reward clamped at 0 and detached (the
  batch-level stand-in for KL(πθ‖π₀) that needs no extra forward pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Batch:
    """Left-aligned, right-padded sequences; ``reply_mask`` marks the reply tokens to score."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    reply_mask: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            *(
                t.to(device)
                for t in (self.input_ids, self.attention_mask, self.reply_mask, self.labels)
            )
        )


def collate(examples: Sequence[tuple[Sequence[int], Sequence[int], int]], pad_id: int) -> Batch:
    """(prompt ids, reply ids, label) triples into one right-padded batch."""
    length = max(len(p) + len(r) for p, r, _ in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), length), dtype=torch.long)
    reply = torch.zeros((len(examples), length), dtype=torch.bool)
    for row, (prompt_ids, reply_ids, _) in enumerate(examples):
        ids = list(prompt_ids) + list(reply_ids)
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[row, : len(ids)] = 1
        reply[row, len(prompt_ids) : len(ids)] = True
    labels = torch.tensor([label for _, _, label in examples], dtype=torch.float32)
    return Batch(input_ids, attention, reply, labels)


def token_logprobs(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(yₜ | y<ₜ) of every next token, and the mask of the reply tokens among them."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logits = logits[:, :-1].float()
    targets = batch.input_ids[:, 1:]
    logps = torch.gather(F.log_softmax(logits, dim=-1), 2, targets.unsqueeze(-1)).squeeze(-1)
    return logps, batch.reply_mask[:, 1:]


def sft_ul_loss(
    logps: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    *,
    unlikelihood_weight: float = 1.0,
) -> torch.Tensor:
    """Mean over examples of per-token NLL (desirable) or unlikelihood (undesirable)."""
    maskf = mask.float()
    counts = maskf.sum(dim=1).clamp(min=1.0)
    nll = -(logps * maskf).sum(dim=1) / counts
    p = logps.exp().clamp(max=1.0 - 1e-6)
    unlikelihood = -(torch.log1p(-p) * maskf).sum(dim=1) / counts
    per_example = torch.where(labels > 0, nll, unlikelihood_weight * unlikelihood)
    return per_example.mean()


def kto_loss(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor,
    labels: torch.Tensor,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    """KTO on sequence log-probabilities under the policy and under the reference θ₀."""
    rewards = policy_logps - reference_logps
    reference_point = rewards.detach().mean().clamp(min=0.0)
    desirable = desirable_weight * (1 - torch.sigmoid(beta * (rewards - reference_point)))
    undesirable = undesirable_weight * (1 - torch.sigmoid(beta * (reference_point - rewards)))
    return torch.where(labels > 0, desirable, undesirable).mean()
