"""The regularized update: an optimizer step plus a decoupled pull toward the anchor θ₀.

    θ ← θ − α · step(∇L(θ)) − α · λ · ∇Ω(θ),   Ω(θ) = ½ Σᵢ wᵢ (θᵢ − θ₀ᵢ)²

so ∇Ω(θ) = w ⊙ (θ − θ₀). ``step`` is Adam's direction (bias-corrected m / (√v + ε)); the
pull is applied outside Adam's adaptive scaling, the way AdamW decouples weight decay, and it
is evaluated at the same θ as the gradient (before the step), as AdamW does. Both parts are
computed with fused multi-tensor ``torch._foreach_*`` operations, never a Python loop over
parameters.

wᵢ = 1 is L2-SP; wᵢ = the diagonal Fisher information (normalised to mean 1) is EWC. The
pull's per-element coefficient α·λ·wᵢ is capped at 1: a larger value would overshoot θ₀ and
oscillate, so with a very large λ each step lands on θ₀ and only the task step moves away.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


class AnchoredAdam:
    """Adam with a decoupled, optionally weighted pull of every parameter toward an anchor.

    ``anchors`` are θ₀ tensors matching ``params``; ``weights`` (optional) the wᵢ tensors
    (EWC); ``pull_mask`` excludes parameters from the pull (e.g. biases and norms when
    ``pull_1d_params`` is off). ``lr`` is α and ``anchor_strength`` is λ.
    """

    def __init__(
        self,
        params: Sequence[torch.nn.Parameter],
        anchors: Sequence[torch.Tensor],
        *,
        lr: float,
        anchor_strength: float,
        weights: Sequence[torch.Tensor] | None = None,
        pull_mask: Sequence[bool] | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        params = list(params)
        if len(anchors) != len(params):
            raise ValueError("one anchor tensor per parameter is required")
        if weights is not None and len(weights) != len(params):
            raise ValueError("one weight tensor per parameter is required")
        mask = list(pull_mask) if pull_mask is not None else [True] * len(params)
        self.lr = lr
        self.anchor_strength = anchor_strength
        self.params = params
        self.optimizer = torch.optim.Adam(
            params, lr=lr, betas=betas, eps=eps, weight_decay=0.0, foreach=True
        )
        picked = [i for i, keep in enumerate(mask) if keep]
        self._pulled = [params[i] for i in picked]
        self._anchors = [anchors[i].detach().to(params[i].device, params[i].dtype) for i in picked]
        self._coefficients: list[torch.Tensor] | None = None
        if weights is not None:
            # Per-element α·λ·wᵢ, capped at 1, computed once: w and the step size are fixed.
            self._coefficients = [
                (weights[i].to(params[i].device, params[i].dtype) * (lr * anchor_strength)).clamp_(
                    max=1.0
                )
                for i in picked
            ]

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def step(self) -> None:
        if self._pulled and self.anchor_strength > 0:
            # θ − c·(θ − θ₀) = lerp(θ, θ₀, c): one fused pass, no temporary copy of θ.
            if self._coefficients is not None:
                torch._foreach_lerp_(self._pulled, self._anchors, self._coefficients)
            else:
                torch._foreach_lerp_(
                    self._pulled, self._anchors, min(self.lr * self.anchor_strength, 1.0)
                )
        self.optimizer.step()

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()


def pull_mask_for(
    named_params: Iterable[tuple[str, torch.nn.Parameter]], pull_1d: bool
) -> list[bool]:
    """Which parameters the pull applies to: all, or only matrices (not biases and norms)."""
    return [pull_1d or param.ndim > 1 for _, param in named_params]


def anchor_distance(params: Sequence[torch.Tensor], anchors: Sequence[torch.Tensor]) -> float:
    """‖θ − θ₀‖₂ over all parameters, a cheap drift measure for the run's metrics."""
    deltas = torch._foreach_sub([p.detach() for p in params], list(anchors))
    norms = torch._foreach_norm(deltas)
    return float(torch.linalg.vector_norm(torch.stack(norms)))
