"""The base model's one-time grounded tuning: how long it takes, and what it changes.

    .venv/bin/python bench/grounded_tuning.py --base var/checkpoints/smollm2-135m-instruct

In a throwaway database (``--workdir``) whose knowledge base is seeded from the corpus and
embedded with all-MiniLM-L6-v2, registers ``--base`` as θ₀ and tunes it as ``ensure_base_model``
does (``learning.grounded_tuning.tune_base_version``, the TuningConfig from the options), timing
it in wall-clock and CPU seconds beside the machine's load (``uptime``: other work shares the
cores). Then the base and the tuned model answer, greedily and batched, with the articles
retrieved for each question in the prompt and no decline threshold (the model alone):

- the corpus's held-out paraphrases (``eval_questions``): the share that states every fact;
- the off-topic questions held back from the tuning (``grounded_tuning_declines.json``): the
  share declined (the reply is a decline, as `services.is_decline` records one).

``--tuned DIR`` measures a tuned checkpoint instead of tuning; ``--compare-bf16 N`` runs N steps
of the tuning in fp32 and in bf16 autocast from the same weights and prints both losses and
times.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.site import throwaway_site  # noqa: E402  (after the path: run as a script)

TUNING_OPTIONS = {
    "questions_per_intent": int,
    "epochs": int,
    "trained_layers": int,
    "batch_size": int,
    "learning_rate": float,
    "max_steps": int,
    "seed": int,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the pretrained checkpoint (θ₀)")
    parser.add_argument("--tuned", help="a tuned checkpoint to measure instead of tuning")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    parser.add_argument("--per-intent", type=int, default=0, help="held-out questions an intent")
    parser.add_argument("--skip-base", action="store_true", help="do not measure the base")
    parser.add_argument("--compare-bf16", type=int, default=0, metavar="STEPS")
    parser.add_argument("--samples", type=int, default=4, help="replies shown per kind")
    parser.add_argument("--workdir", help="where the throwaway database and checkpoints go")
    tuning = parser.add_argument_group("tuning (default: TuningConfig's)")
    for option, kind in TUNING_OPTIONS.items():
        tuning.add_argument(f"--{option.replace('_', '-')}", dest=option, type=kind)
    tuning.add_argument("--bf16", action="store_true", help="bf16 autocast")
    args = parser.parse_args(argv)
    throwaway_site(args.workdir, "bench-tuning-")
    import django

    django.setup()
    import torch
    from django.core.management import call_command

    torch.set_num_threads(args.threads)
    call_command("migrate", verbosity=0)
    call_command("seed_knowledge_base", verbosity=0)
    from learning.grounded_tuning import TuningConfig

    chosen = {option: getattr(args, option) for option in TUNING_OPTIONS}
    config = TuningConfig(
        bf16=args.bf16, **{option: value for option, value in chosen.items() if value is not None}
    )
    print(f"torch threads {torch.get_num_threads()}; {config}")
    if args.compare_bf16:
        _compare_bf16(args.base, config, args.compare_bf16)
        return 0
    tuned = args.tuned or _tune(args.base, config)
    models = ([] if args.skip_base else [("base", args.base)]) + [("tuned", tuned)]
    results = {
        label: _measure(label, path, args.per_intent, args.samples) for label, path in models
    }
    print(f"\n{'measure':<40}" + "".join(f"{label:>10}" for label in results))
    for key, title in (
        ("answered", "held-out answered with every fact"),
        ("declined", "held-back off-topic declined"),
        ("seconds", "time to answer them all (s)"),
    ):
        cells = "".join(
            f"{results[label][key]:>10.0f}" if key == "seconds" else f"{results[label][key]:>10.1%}"
            for label in results
        )
        print(f"{title:<40}{cells}")
    return 0


def _tune(base_path: str, config) -> str:
    from learning.grounded_tuning import tune_base_version
    from learning.models import ModelVersion
    from learning.versions import register_version

    base = register_version("base", base_path, ModelVersion.Source.PRETRAINED)
    print(f"load before: {_uptime()}")
    started, cpu_started = time.monotonic(), time.process_time()
    tuned = tune_base_version(base, config=config)
    seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
    print(f"load after:  {_uptime()}")
    metrics = tuned.metrics
    print(
        f"tune_base_version: {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU (the training alone: "
        f"{metrics['tuning_seconds']:.0f} s wall, {metrics['tuning_cpu_seconds']:.0f} s CPU); "
        f"final loss {metrics['tuning_final_loss']}; {tuned.checkpoint_path}"
    )
    return tuned.checkpoint_path


def _measure(label: str, path: str, per_intent: int, samples: int) -> dict[str, float]:
    from django.conf import settings

    from knowledge.answering import is_decline
    from knowledge.demo.corpus import load_corpus
    from learning.grounded_tuning import grounded_prompt, load_decline_questions
    from serving.chat_template import greedy_continuations, prompt_ids, states_facts
    from serving.checkpoints import load_checkpoint

    questions = [
        (question, intent)
        for intent in load_corpus().intents
        for question in (intent.eval_questions[:per_intent] or intent.eval_questions)
    ]
    questions += [(q, None) for q in load_decline_questions().off_topic_held_back]
    model, tokenizer = load_checkpoint(path)
    prompts = [prompt_ids(tokenizer, grounded_prompt(question).turns) for question, _ in questions]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # less padding
    started = time.monotonic()
    replies_in_order = greedy_continuations(
        model,
        tokenizer,
        [prompts[i] for i in order],
        max_new_tokens=settings.GENERATION_MAX_NEW_TOKENS,
        batch_size=16,
    )
    seconds = time.monotonic() - started
    replies = dict(zip(order, replies_in_order, strict=True))
    answered, missed, declined, not_declined = [], [], [], []
    for i, (question, intent) in enumerate(questions):
        reply = replies[i]
        if intent is None:
            (declined if is_decline(reply) else not_declined).append((question, reply))
        else:
            (answered if states_facts(reply, intent.facts) else missed).append((question, reply))
    print(f"\n{label} ({path}): sample replies")
    for kind, items in (
        ("answered", answered),
        ("missed", missed),
        ("declined", declined),
        ("not declined", not_declined),
    ):
        for question, reply in items[:samples]:
            print(f"  {kind}: {question!r}\n      → {reply[:220]!r}")
    in_scope = len(answered) + len(missed)
    off_topic = len(declined) + len(not_declined)
    return {
        "answered": len(answered) / in_scope,
        "declined": len(declined) / off_topic,
        "seconds": seconds,
    }


def _compare_bf16(base_path: str, config, steps: int) -> None:
    from dataclasses import replace

    from knowledge.demo.corpus import load_corpus
    from learning.grounded_tuning import tune, tuning_examples
    from serving.checkpoints import load_checkpoint

    examples = tuning_examples(load_corpus(), config)[: steps * config.batch_size]
    for bf16 in (False, True):
        model, tokenizer = load_checkpoint(base_path)
        result = tune(
            model,
            tokenizer,
            examples,
            replace(config, bf16=bf16, epochs=1, max_steps=steps, warmup_share=0.0),
            log=lambda line: None,
        )
        print(
            f"{'bf16' if bf16 else 'fp32'}: losses {result.losses}; {result.seconds:.0f} s wall, "
            f"{result.cpu_seconds:.0f} s CPU for {len(examples)} examples, {steps} steps"
        )


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    raise SystemExit(main())
