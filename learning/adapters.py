"""LoRA adapters (peft) for large bases: a run trains a low-rank delta on a frozen base.

With ``lora_rank`` > 0 every targeted linear layer computes W·x + s·B·A·x (s = alpha / rank),
W being the frozen base's weights; a run trains A and B only. A candidate is saved as the
adapter alone (peft's adapter_config.json and adapter_model.safetensors) beside the tokenizer
and a metadata file naming its base checkpoint; ``serving.checkpoints.apply_adapter``
applies it to that base. A run on an adapter version continues its adapter on the same base,
so every adapter of a lineage applies to the one base it started on.

The regularized update on an adapter. The design's θ₀ is the frozen base. The adapter's delta
ΔW = s·B·A is zero exactly when B = 0, so in the adapter's parameters the anchor is B₀ = 0
(with A₀ = A as the run starts), and Ω(θ) = ½ Σᵢ wᵢ (θᵢ − θ₀ᵢ)² over A and B is a penalty on
the delta that AnchoredAdam applies as it does to a full model: one decoupled, fused pull,
which takes B, and so the model, back to the base. A is held where it started rather than
pulled to 0: A alone changes nothing while B = 0, and at A = 0 the gradient of B (∝ A)
vanishes, so the adapter could not learn again. With ``anchor="parent"`` θ₀ is the adapter as
the run starts (the parent's; a new adapter on a full parent is the parent itself). For EWC,
wᵢ is the Fisher of the adapter's own parameters at θ₀ (zero for A at B = 0, where A does not
matter).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

# The adapter matrices that multiply last (ΔW = s·B·A): zero in the frozen base.
DELTA_ZERO_PARTS = (".lora_B.", ".lora_embedding_B.")


def new_adapter(
    model: torch.nn.Module, *, rank: int, alpha: float, dropout: float, targets: str, seed: int
) -> Any:
    """``model`` frozen under a new LoRA adapter (a peft model; B = 0: it computes what
    ``model`` did).

    ``targets``: "all-linear" or module names separated by commas. A's initial values are
    drawn under ``seed``, so the same settings give the same adapter (and the same Fisher).
    """
    from peft import LoraConfig, get_peft_model  # peft takes seconds to import: only for LoRA

    names = [name.strip() for name in targets.split(",") if name.strip()]
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=names[0] if names == ["all-linear"] else names,
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def adapter_anchor_state(model: torch.nn.Module, *, toward_base: bool) -> dict[str, torch.Tensor]:
    """θ₀ of the adapter's (trainable) parameters, by name: as they are now, with B = 0 when
    the anchor is the frozen base (``toward_base``)."""
    return {
        name: torch.zeros_like(param)
        if toward_base and any(part in name for part in DELTA_ZERO_PARTS)
        else param.detach().clone()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """A sha256 of named tensors: the key of an adapter θ₀'s cached Fisher."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


@contextmanager
def parameters_set_to(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> Iterator[None]:
    """``model`` with the parameters ``state`` names set to its values, restored afterwards
    (to measure an adapter at its θ₀ without a second copy of the model)."""
    params = dict(model.named_parameters())
    saved = {name: params[name].detach().clone() for name in state}
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)
