"""Step time of the regularized update against a plain Adam step, side by side.

    .venv/bin/python bench/regularizer.py [--checkpoint PATH] [--steps 30] [--warmup 5]

Loads the starter model (the active version's checkpoint unless ``--checkpoint`` names one),
and on the same batches times, interleaved step by step so that load on the machine hits all
variants alike:

- ``adam``: torch.optim.Adam (foreach), the plain optimizer step;
- ``l2sp``: AnchoredAdam with wᵢ = 1;
- ``ewc``:  AnchoredAdam with wᵢ = a diagonal Fisher estimate.

It prints the median time of the optimizer step alone and of a whole training step (forward,
backward, clipping, step), and their ratios to plain Adam.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint directory (default: the active version)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant first")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)

    import django

    django.setup()
    import torch

    from learning.chat_format import padding_id
    from learning.checkpoints import load_checkpoint
    from learning.evaluation import encode_pairs
    from learning.fisher import diagonal_fisher
    from learning.losses import collate, sft_ul_loss, token_logprobs
    from learning.retention import replay_pairs
    from learning.update import AnchoredAdam

    path = args.checkpoint or _active_checkpoint()
    torch.manual_seed(0)
    pairs = replay_pairs()
    lr, strength = 3e-4, 10.0

    variants = {}
    for name in ("adam", "l2sp", "ewc"):
        model, tokenizer = load_checkpoint(path)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        anchors = [p.detach().clone() for p in params]
        if name == "adam":
            optimizer = torch.optim.Adam(params, lr=lr, foreach=True)
        else:
            weights = None
            if name == "ewc":
                sample = encode_pairs(tokenizer, pairs[:16], max_tokens=256)
                fisher = diagonal_fisher(model, sample, pad_id=padding_id(tokenizer))
                weights = [fisher[n] for n, p in model.named_parameters() if p.requires_grad]
            optimizer = AnchoredAdam(
                params, anchors, lr=lr, anchor_strength=strength, weights=weights
            )
        variants[name] = (model, params, optimizer)
    pad_id = padding_id(tokenizer)
    encoded = encode_pairs(tokenizer, pairs, max_tokens=256)
    batches = [
        collate(encoded[i : i + args.batch_size], pad_id)
        for i in range(0, len(encoded) - args.batch_size, args.batch_size)
    ]
    opt_times: dict[str, list[float]] = {name: [] for name in variants}
    step_times: dict[str, list[float]] = {name: [] for name in variants}
    for step in range(args.warmup + args.steps):
        batch = batches[step % len(batches)]
        for name, (model, params, optimizer) in variants.items():
            started = time.perf_counter()
            logps, mask = token_logprobs(model, batch)
            loss = sft_ul_loss(logps, mask, batch.labels)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
            before_step = time.perf_counter()
            optimizer.step()
            finished = time.perf_counter()
            if step >= args.warmup:
                opt_times[name].append(finished - before_step)
                step_times[name].append(finished - started)

    count = sum(p.numel() for p in variants["adam"][1])
    print(f"checkpoint: {path}")
    print(f"parameters: {count:,}; batch {args.batch_size}; {args.steps} timed steps per variant,")
    print(f"{args.warmup} warm-up steps; torch threads {torch.get_num_threads()}; medians")
    print()
    print(f"{'update':<8}{'optimizer step':>18}{'ratio':>8}{'training step':>18}{'ratio':>8}")
    base_opt = statistics.median(opt_times["adam"])
    base_step = statistics.median(step_times["adam"])
    for name in variants:
        opt = statistics.median(opt_times[name])
        full = statistics.median(step_times[name])
        print(
            f"{name:<8}{opt * 1e3:>15.2f} ms{opt / base_opt:>7.2f}×"
            f"{full * 1e3:>15.1f} ms{full / base_step:>7.2f}×"
        )
    return 0


def _active_checkpoint() -> str:
    from learning.models import ModelVersion

    version = ModelVersion.objects.active().first()
    if version is None:
        raise SystemExit("No active model version: build the starter model or pass --checkpoint.")
    return version.checkpoint_path


if __name__ == "__main__":
    raise SystemExit(main())
