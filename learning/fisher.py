"""The diagonal Fisher information of the anchor θ₀ on retention data, for EWC.

Estimated as the mean over retention examples of the squared gradient of each example's
log-likelihood (the empirical Fisher), then normalised to mean 1 so that λ means the same for
``l2sp`` and ``ewc``. It depends only on the anchor, so it is computed once per anchor and cached
as a safetensors file beside the checkpoints. Each example costs a backward pass of the whole
model (seconds for a 135 M-parameter base on two cores), so the estimate uses an evenly spaced
sample of at most ``LEARNING_FISHER_MAX_EXAMPLES`` of them (``fisher_sample``); the cache key
names the sample size, so a new cap is a new estimate.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from learning.losses import collate, token_logprobs

Encoded = tuple[tuple[int, ...], tuple[int, ...], int]


def diagonal_fisher(
    model: torch.nn.Module,
    encoded: Sequence[Encoded],
    *,
    pad_id: int,
    device="cpu",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    totals = [torch.zeros_like(p, dtype=torch.float32) for _, p in named]
    model.eval()
    for done, example in enumerate(encoded, start=1):
        model.zero_grad(set_to_none=True)
        batch = collate([example], pad_id).to(device)
        logps, mask = token_logprobs(model, batch)
        (-(logps * mask).sum() / mask.sum().clamp(min=1)).backward()
        grads = [
            p.grad.float() if p.grad is not None else torch.zeros_like(t)
            for (_, p), t in zip(named, totals, strict=True)
        ]
        torch._foreach_addcmul_(totals, grads, grads)
        if progress is not None:
            progress(done, len(encoded))
    model.zero_grad(set_to_none=True)
    count = max(len(encoded), 1)
    torch._foreach_div_(totals, count)
    mean = torch.cat([t.flatten() for t in totals]).mean().clamp(min=1e-12)
    torch._foreach_div_(totals, mean)
    return {name: t.cpu().contiguous() for (name, _), t in zip(named, totals, strict=True)}


def fisher_sample(encoded: Sequence[Encoded], limit: int) -> list[Encoded]:
    """At most ``limit`` of ``encoded``, evenly spaced: every intent of a corpus in order keeps
    its share (a prefix would hold the first intents alone), the same sample every time."""
    if len(encoded) <= limit:
        return list(encoded)
    step = len(encoded) / limit
    return [encoded[int(i * step)] for i in range(limit)]


def cached_fisher(
    cache_dir: Path,
    key: str,
    model: torch.nn.Module,
    encoded: Sequence[Encoded],
    *,
    pad_id: int,
    device="cpu",
    on_miss: Callable[[int], Callable[[int, int], None]] | None = None,
) -> dict[str, torch.Tensor]:
    """The anchor's Fisher from the cache, computed and stored (atomically) on a miss;
    ``on_miss(examples)`` is called before computing it and returns its progress reporter.

    ``key`` names the anchor: its version's name (and for a LoRA adapter its θ₀'s digest), and
    the examples (how many, and whether grounded) where they may differ.
    """
    path = cache_dir / f"{key}.fisher.safetensors"
    if path.exists():
        return load_file(str(path))
    progress = on_miss(len(encoded)) if on_miss is not None else None
    fisher = diagonal_fisher(model, encoded, pad_id=pad_id, device=device, progress=progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-fisher-")
    os.close(fd)
    try:
        save_file(fisher, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return fisher
