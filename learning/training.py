"""The training loop of one run: task loss on feedback (+ replay), the regularized update."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from django.conf import settings

from learning.examples import TrainingExample
from learning.losses import collate, kto_loss, sft_ul_loss, token_logprobs
from learning.precision import AUTOCAST_MODES, training_autocast
from learning.update import AnchoredAdam, pull_mask_for

Encoded = tuple[tuple[int, ...], tuple[int, ...], int]
ProgressCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class Hyperparameters:
    lr: float = 5e-5
    anchor_strength: float = 300.0
    regularizer: str = "ewc"
    pull_1d_params: bool = True
    anchor: str = "base"
    loss: str = "sft_ul"
    unlikelihood_weight: float = 0.0
    kto_beta: float = 0.1
    epochs: int = 2
    max_steps: int = 0
    batch_size: int = 8
    replay_share: float = 0.5
    # Share of θ₀ in the final weights: θ ← (1 − β)·θ + β·θ₀ after training (weight averaging,
    # the simple baseline the penalty must beat; 0 turns it off).
    average_with_anchor: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    max_tokens: int = 256
    # LoRA (learning.adapters): 0 trains every weight; > 0 an adapter of this rank on the frozen
    # base, scaled by lora_alpha / lora_rank, on the layers lora_targets names.
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = "all-linear"
    # bf16 autocast of the forward pass: auto, bf16 or off (learning.precision).
    autocast: str = "auto"

    @classmethod
    def from_settings(cls, overrides: dict[str, Any] | None = None) -> Hyperparameters:
        base = cls(
            lr=settings.LEARNING_RATE,
            anchor_strength=settings.LEARNING_ANCHOR_STRENGTH,
            regularizer=settings.LEARNING_REGULARIZER,
            pull_1d_params=settings.LEARNING_PULL_1D_PARAMS,
            anchor=settings.LEARNING_ANCHOR,
            loss=settings.LEARNING_LOSS,
            unlikelihood_weight=settings.LEARNING_UNLIKELIHOOD_WEIGHT,
            kto_beta=settings.LEARNING_KTO_BETA,
            epochs=settings.LEARNING_EPOCHS,
            max_steps=settings.LEARNING_MAX_STEPS,
            batch_size=settings.LEARNING_BATCH_SIZE,
            replay_share=settings.LEARNING_REPLAY_SHARE,
            average_with_anchor=settings.LEARNING_AVERAGE_WITH_ANCHOR,
            grad_clip=settings.LEARNING_GRAD_CLIP,
            seed=settings.LEARNING_SEED,
            max_tokens=settings.LEARNING_MAX_TOKENS,
            lora_rank=settings.LEARNING_LORA_RANK,
            lora_alpha=settings.LEARNING_LORA_ALPHA,
            lora_dropout=settings.LEARNING_LORA_DROPOUT,
            lora_targets=settings.LEARNING_LORA_TARGETS,
            autocast=settings.LEARNING_AUTOCAST,
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides or {}) - known
        if unknown:
            raise ValueError(f"unknown hyper-parameters: {', '.join(sorted(unknown))}")
        return replace(base, **(overrides or {})).validated()

    def validated(self) -> Hyperparameters:
        if self.regularizer not in ("l2sp", "ewc"):
            raise ValueError("regularizer must be l2sp or ewc")
        if self.loss not in ("sft_ul", "kto"):
            raise ValueError("loss must be sft_ul or kto")
        if self.anchor not in ("base", "parent"):
            raise ValueError("anchor must be base or parent")
        if not 0 <= self.replay_share < 1:
            raise ValueError("replay_share must be in [0, 1)")
        if not 0 <= self.average_with_anchor <= 1:
            raise ValueError("average_with_anchor must be in [0, 1]")
        if self.lr < 0 or self.anchor_strength < 0 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError("lr and anchor_strength must be ≥ 0; batch_size, epochs ≥ 1")
        if self.lora_rank < 0 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ValueError("lora_rank must be ≥ 0, lora_alpha > 0, lora_dropout in [0, 1)")
        if self.lora_rank and not self.lora_targets.strip(" ,"):
            raise ValueError("lora_targets must name the layers that get an adapter")
        if self.autocast not in AUTOCAST_MODES:
            raise ValueError(f"autocast must be one of {', '.join(AUTOCAST_MODES)}")
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def planned_steps(n_examples: int, hp: Hyperparameters) -> int:
    per_batch = max(1, hp.batch_size - _replay_per_batch(hp))
    steps = hp.epochs * math.ceil(n_examples / per_batch) if n_examples else 0
    return min(steps, hp.max_steps) if hp.max_steps else steps


def _replay_per_batch(hp: Hyperparameters) -> int:
    return min(hp.batch_size - 1, round(hp.batch_size * hp.replay_share))


def train_candidate(
    model: torch.nn.Module,
    anchor_state: dict[str, torch.Tensor],
    examples: Sequence[TrainingExample],
    replay: Sequence[Encoded],
    hp: Hyperparameters,
    *,
    pad_id: int,
    fisher: dict[str, torch.Tensor] | None = None,
    reference_logps: dict[int, float] | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressCallback | None = None,
) -> list[float]:
    """Fine-tune ``model`` in place with the regularized update; returns the loss per step.

    ``anchor_state`` is θ₀ by parameter name; ``fisher`` the EWC weights by name (required for
    ``ewc``); ``reference_logps`` the θ₀ sequence log-probability of each example (by index in
    ``examples``), required for ``kto``. Deterministic under ``hp.seed`` on the CPU.

    Only parameters that require gradients are trained and pulled: with a LoRA adapter
    (``learning.adapters``) those are the adapter's, and ``anchor_state`` holds its θ₀.
    The forward pass runs under ``hp.autocast`` (``learning.precision``).
    """
    device = torch.device(device)
    torch.manual_seed(hp.seed)
    rng = random.Random(hp.seed)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    weights = None
    if hp.regularizer == "ewc":
        if fisher is None:
            raise ValueError("ewc needs the Fisher estimate of the anchor")
        weights = [fisher[n] for n, _ in named]
    if hp.loss == "kto" and reference_logps is None:
        raise ValueError("kto needs the reference (θ₀) log-probabilities")
    optimizer = AnchoredAdam(
        params,
        [anchor_state[n] for n, _ in named],
        lr=hp.lr,
        anchor_strength=hp.anchor_strength,
        weights=weights,
        pull_mask=pull_mask_for(named, hp.pull_1d_params),
    )
    total = planned_steps(len(examples), hp)
    n_replay = _replay_per_batch(hp) if replay else 0
    n_feedback = max(1, hp.batch_size - n_replay)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    autocast = training_autocast(hp.autocast, device)
    for step in range(total):
        if len(order) < n_feedback:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order.extend(fresh)
        chosen, order = order[:n_feedback], order[n_feedback:]
        feedback_part = [
            (examples[i].prompt_ids, examples[i].reply_ids, examples[i].label) for i in chosen
        ]
        replay_part = [replay[rng.randrange(len(replay))] for _ in range(n_replay)]
        with autocast:
            loss = _batch_loss(
                model, feedback_part, replay_part, chosen, hp, pad_id, reference_logps, device
            )
        optimizer.zero_grad()
        loss.backward()
        if hp.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, hp.grad_clip, foreach=True)
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, total, losses[-1])
    if hp.average_with_anchor > 0:
        with torch.no_grad():
            torch._foreach_lerp_(
                params, [anchor_state[n].to(device) for n, _ in named], hp.average_with_anchor
            )
    model.eval()
    return losses


def _batch_loss(model, feedback_part, replay_part, chosen, hp, pad_id, reference_logps, device):
    if hp.loss == "sft_ul":
        batch = collate(feedback_part + replay_part, pad_id).to(device)
        logps, mask = token_logprobs(model, batch)
        return sft_ul_loss(logps, mask, batch.labels, unlikelihood_weight=hp.unlikelihood_weight)
    batch = collate(feedback_part, pad_id).to(device)
    logps, mask = token_logprobs(model, batch)
    policy = (logps * mask).sum(dim=1)
    reference = torch.tensor([reference_logps[i] for i in chosen], device=device)
    loss = kto_loss(policy, reference, batch.labels, beta=hp.kto_beta)
    if replay_part:
        replay_batch = collate(replay_part, pad_id).to(device)
        replay_logps, replay_mask = token_logprobs(model, replay_batch)
        loss = loss + sft_ul_loss(replay_logps, replay_mask, replay_batch.labels)
    return loss
