"""Training-step time and loss of the update's variants, side by side on the same batches.

    .venv/bin/python bench/regularizer.py [--checkpoint PATH] [--steps 30] [--warmup 5]
        [--variants adam,l2sp,ewc,l2sp-bf16,lora,lora-bf16] [--lora-rank 8]

Loads the checkpoint (the active version's unless ``--checkpoint`` names one) once per variant,
and on the same batches times, interleaved step by step so that load on the machine hits all
variants alike:

- ``adam``: torch.optim.Adam (foreach), the plain optimizer step, fp32;
- ``l2sp``: AnchoredAdam with wᵢ = 1, fp32;
- ``ewc``:  AnchoredAdam with wᵢ = a diagonal Fisher estimate, fp32;
- ``l2sp-bf16``: ``l2sp`` with the forward pass under bf16 autocast (as LEARNING_AUTOCAST=bf16);
- ``lora``: ``l2sp`` on a LoRA adapter (all linear layers, ``--lora-rank``) on the frozen
  checkpoint, fp32 (as LEARNING_LORA_RANK);
- ``lora-bf16``: ``lora`` under bf16 autocast.

It prints the median time of the optimizer step alone and of a whole training step (forward,
backward, clipping, step), wall-clock and CPU time (which other processes on a shared machine
disturb less; with one torch thread, OMP_NUM_THREADS=1, it is the work done), their ratios to
plain Adam (or to the first variant), each variant's loss on the first batch (all start from
the same weights, so fp32 against bf16 there is the precision's effect alone) and its mean loss
over the timed steps (LoRA, at the same α as full fine-tuning, moves less), then bf16 against
fp32 and LoRA against full fine-tuning. Whether LEARNING_AUTOCAST=auto would use bf16 on this
CPU is printed too. On SmolLM2 a step takes seconds: ``--steps 3 --warmup 1`` is plenty; each
full fine-tuning variant holds about 3 GB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot_site.settings")

VARIANTS = ("adam", "l2sp", "ewc", "l2sp-bf16", "lora", "lora-bf16")


@dataclass
class Variant:
    model: Any
    params: list
    optimizer: Any
    autocast: str  # "bf16" or "off", as LEARNING_AUTOCAST
    opt_times: list[float] = field(default_factory=list)
    step_times: list[float] = field(default_factory=list)
    step_cpu_times: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint directory (default: the active version)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant first")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--lora-rank", type=int, default=8)
    args = parser.parse_args(argv)
    names = [name for name in args.variants.split(",") if name]
    if unknown := set(names) - set(VARIANTS):
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")

    import django

    django.setup()
    import torch

    from learning.evaluation import encode_pairs
    from learning.losses import collate, sft_ul_loss, token_logprobs
    from learning.precision import cpu_computes_bf16, training_autocast
    from learning.retention import replay_pairs
    from serving.chat_template import padding_id
    from serving.checkpoints import load_checkpoint

    path = args.checkpoint or _active_checkpoint()
    torch.manual_seed(0)
    pairs = replay_pairs()
    variants = {name: _build(name, path, pairs, args.lora_rank) for name in names}
    tokenizer = load_checkpoint(path)[1]
    pad_id = padding_id(tokenizer)
    encoded = encode_pairs(tokenizer, pairs, max_tokens=256)
    batches = [
        collate(encoded[i : i + args.batch_size], pad_id)
        for i in range(0, len(encoded) - args.batch_size, args.batch_size)
    ]
    used = [batches[step % len(batches)] for step in range(args.warmup + args.steps)]
    for step, batch in enumerate(used):
        for name, variant in variants.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            with training_autocast(variant.autocast, "cpu"):
                logps, mask = token_logprobs(variant.model, batch)
                loss = sft_ul_loss(logps, mask, batch.labels)
            variant.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(variant.params, 1.0, foreach=True)
            before_step = time.perf_counter()
            variant.optimizer.step()
            finished, finished_cpu = time.perf_counter(), time.process_time()
            variant.losses.append(float(loss.detach()))
            if step >= args.warmup:
                variant.opt_times.append(finished - before_step)
                variant.step_times.append(finished - started)
                variant.step_cpu_times.append(finished_cpu - started_cpu)
            print(
                f"step {step + 1}/{len(used)} {name}: {finished - started:.2f} s",
                file=sys.stderr,
                flush=True,
            )

    _report(args, path, variants, used, cpu_computes_bf16(), torch.get_num_threads())
    return 0


def _build(name: str, path: str, pairs, lora_rank: int) -> Variant:
    """The model and optimizer of one variant, from a fresh copy of the checkpoint."""
    import torch

    from learning.adapters import adapter_anchor_state, new_adapter
    from learning.evaluation import encode_pairs
    from learning.fisher import diagonal_fisher
    from learning.update import AnchoredAdam
    from serving.chat_template import padding_id
    from serving.checkpoints import load_checkpoint

    lr, strength = 3e-4, 10.0
    model, tokenizer = load_checkpoint(path)
    autocast = "bf16" if name.endswith("-bf16") else "off"
    if name.startswith("lora"):
        model = new_adapter(
            model, rank=lora_rank, alpha=2.0 * lora_rank, dropout=0.0, targets="all-linear", seed=0
        )
        anchor = adapter_anchor_state(model, toward_base=True)
    else:
        anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    if name == "adam":
        return Variant(model, params, torch.optim.Adam(params, lr=lr, foreach=True), autocast)
    weights = None
    if name == "ewc":
        sample = encode_pairs(tokenizer, pairs[:16], max_tokens=256)
        fisher = diagonal_fisher(model, sample, pad_id=padding_id(tokenizer))
        weights = [fisher[n] for n, _ in named]
        model.train()
    optimizer = AnchoredAdam(
        params, [anchor[n] for n, _ in named], lr=lr, anchor_strength=strength, weights=weights
    )
    return Variant(model, params, optimizer, autocast)


def _report(args, path, variants: dict[str, Variant], batches, bf16_cpu: bool, threads: int):
    tokens = statistics.mean(int(b.attention_mask.sum()) for b in batches)
    print(f"checkpoint: {path}")
    print(
        f"batch {args.batch_size} ({tokens:.0f} tokens on average); {args.steps} timed steps per "
        f"variant after {args.warmup} warm-up steps; torch threads {threads}; medians"
    )
    print(
        "CPU bf16 instructions (AMX-BF16 / AVX512-BF16): "
        f"{'yes' if bf16_cpu else 'no'}; LEARNING_AUTOCAST=auto trains in "
        f"{'bf16' if bf16_cpu else 'fp32'} here"
    )
    print()
    print(
        f"{'update':<11}{'trained':>13}{'optimizer step':>17}{'ratio':>8}"
        f"{'training step':>16}{'ratio':>8}{'its CPU time':>15}{'ratio':>8}"
        f"{'first loss':>12}{'mean loss':>11}"
    )
    reference = variants.get("adam") or next(iter(variants.values()))
    base_opt = statistics.median(reference.opt_times)
    base_step = statistics.median(reference.step_times)
    base_cpu = statistics.median(reference.step_cpu_times)
    for name, variant in variants.items():
        opt = statistics.median(variant.opt_times)
        full = statistics.median(variant.step_times)
        cpu = statistics.median(variant.step_cpu_times)
        trained = sum(p.numel() for p in variant.params)
        timed = variant.losses[args.warmup :]
        print(
            f"{name:<11}{trained:>13,}{opt * 1e3:>14.2f} ms{opt / base_opt:>7.2f}×"
            f"{full * 1e3:>13.1f} ms{full / base_step:>7.2f}×"
            f"{cpu * 1e3:>12.1f} ms{cpu / base_cpu:>7.2f}×"
            f"{variant.losses[0]:>12.5g}{statistics.mean(timed):>11.5g}"
        )
    print()
    for slow, fast, what in (
        ("l2sp-bf16", "l2sp", "bf16 vs fp32 (full)"),
        ("lora-bf16", "lora", "bf16 vs fp32 (LoRA)"),
        ("lora", "l2sp", "LoRA vs full (fp32)"),
        ("lora-bf16", "l2sp-bf16", "LoRA vs full (bf16)"),
    ):
        if slow in variants and fast in variants:
            a, b = variants[slow], variants[fast]
            ratio = statistics.median(a.step_times) / statistics.median(b.step_times)
            cpu = statistics.median(a.step_cpu_times) / statistics.median(b.step_cpu_times)
            line = f"{what}: training step {ratio:.2f}× (CPU time {cpu:.2f}×)"
            if what.startswith("bf16"):  # same weights, same steps: the precision's effect
                first = a.losses[0] / b.losses[0] - 1
                mean = statistics.mean(a.losses[args.warmup :]) / statistics.mean(
                    b.losses[args.warmup :]
                )
                line += (
                    f"; loss on the first batch {first:+.3%}, over the timed steps {mean - 1:+.3%}"
                )
            print(line)


def _active_checkpoint() -> str:
    from learning.models import ModelVersion

    version = ModelVersion.objects.active().first()
    if version is None:
        raise SystemExit("No active model version: build the starter model or pass --checkpoint.")
    return version.checkpoint_path


if __name__ == "__main__":
    raise SystemExit(main())
