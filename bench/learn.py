"""Prove it learns: simulated customers teach the bot a changed policy through the real loop.

    .venv/bin/python bench/learn.py --checkpoint var/checkpoints/starter-0-…   # full
    .venv/bin/python bench/learn.py --quick                                   # ~minutes
    .venv/bin/python bench/learn.py --checkpoint var/checkpoints/smollm2-135m-instruct-grounded-… \
        --configs default,lambda=0,staff-edit --seeds 0,1,2                   # the grounded base

Customers are websocket clients of the real chat consumer (channels' WebsocketCommunicator on
the project's ASGI application); their ratings are stored as Feedback; each round queues a real
TrainingRun that is executed, gated and promoted (or not) exactly as the worker would. The whole
benchmark runs in a throwaway SQLite database and checkpoint directory (``--workdir``, a
temporary directory by default), never in the project's own database.

Per configuration it prints a round table: changed-intent accuracy on seen and held-out
paraphrases, unchanged-intent accuracy (and relative to the base), retention perplexity
relative to the base, the share of thumbs-up, the gate's decision and the training time; then
one summary line per configuration. ``--quick`` uses 4 changed + 8 unchanged intents, a small
model built on the spot, fewer customers and two configurations.

A ``--checkpoint`` tuned to answer from the knowledge base (bin/start's default base) is
measured as it serves: its knowledge base is seeded with the old policies, every question
retrieves its article (or is declined below the threshold), the off-topic questions of
``bench/learning/off_topic.json`` are asked too, and the ``staff-edit`` configuration edits
the changed articles after round 1. ``--seeds`` repeats everything per seed and prints the
median and range of each configuration's last changed-held-out share.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.site import throwaway_site  # noqa: E402  (after the path: run as a script)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small, fast variant (CI)")
    parser.add_argument("--checkpoint", help="base checkpoint (full run; default: build one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", help="comma-separated names (default: all for the mode)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", help="comma-separated seeds: a distribution (overrides --seed)")
    parser.add_argument(
        "--per-changed-intent", type=int, help="customers asking each changed intent a round"
    )
    parser.add_argument("--unchanged", type=int, help="customers asking unchanged intents a round")
    parser.add_argument(
        "--eval-per-intent", type=int, help="questions per unchanged intent measured (2; quick 3)"
    )
    parser.add_argument("--workdir", help="where the throwaway database and checkpoints go")
    parser.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="an extra configuration: hyper-parameter overrides of a run, e.g."
        " --arm strong:lr=1e-4,epochs=3 (repeatable; alone, it runs instead of the standard"
        " configurations)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a LEARNING_* setting for this run, e.g. --set LEARNING_RATE=1e-3 (repeatable)",
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    workdir = throwaway_site(args.workdir, "bench-learn-")

    from bench.learning.runner import write_retention_corpus
    from bench.learning.scenario import load_scenario

    scenario = load_scenario(quick=args.quick)
    # A private database, broker and channel layer: the benchmark never touches the project's.
    os.environ.update(
        {
            "LEARNING_RETENTION_CORPUS": str(write_retention_corpus(scenario, workdir)),
            "CHAT_MESSAGES_PER_MINUTE": "100000",
            "CHAT_FEEDBACK_PER_MINUTE": "100000",
            # The benchmark measures the update on what customers type, planted corrections
            # included (its adversarial visits): corrections are learned as typed, as before
            # staff approval became the default (--set LEARNING_TRAIN_UNREVIEWED_TEXT=false).
            "LEARNING_TRAIN_UNREVIEWED_TEXT": "true",
        }
    )
    for assignment in args.set:
        name, _, value = assignment.partition("=")
        if not name.startswith("LEARNING_"):
            parser.error(f"--set takes LEARNING_* settings, not {name}")
        os.environ[name] = value
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from bench.learning.customers import Crowd
    from bench.learning.runner import (
        build_quick_base,
        run_benchmark,
        spread_table,
        standard_configs,
    )
    from learning.retention import is_grounded

    call_command("migrate", verbosity=0)
    base_path = args.checkpoint or _build_base(args.quick, scenario, workdir, build_quick_base)
    configs = standard_configs(
        settings.LEARNING_REGULARIZER, settings.LEARNING_LOSS, grounded=is_grounded(base_path)
    )
    if args.quick:
        configs = [c for c in configs if c.name in ("default", "lambda=0")]
    if args.configs:
        wanted = args.configs.split(",")
        unknown = set(wanted) - {c.name for c in configs}
        if unknown:
            parser.error(f"unknown configurations: {', '.join(sorted(unknown))}")
        configs = [c for c in configs if c.name in wanted]
    elif args.arm:
        configs = []  # the arms alone, unless --configs names others too
    configs += [_arm(spec, parser) for spec in args.arm]
    crowd = (
        Crowd(per_changed_intent=6, unchanged=6, adversarial_visits=6, generous_visits=4)
        if args.quick
        else Crowd()
    )
    crowd = replace(
        crowd,
        per_changed_intent=args.per_changed_intent or crowd.per_changed_intent,
        unchanged=args.unchanged if args.unchanged is not None else crowd.unchanged,
    )
    seeds = [int(seed) for seed in args.seeds.split(",")] if args.seeds else [args.seed]
    print(
        f"scenario: {len(scenario.changed)} changed intents, {len(scenario.unchanged)} unchanged;"
        f" base {base_path}; {args.rounds} rounds; seeds {seeds}; configurations:"
        f" {', '.join(c.name for c in configs)}; defaults: {_defaults(settings)}"
    )
    finals: dict[str, list] = {c.name: [] for c in configs}
    for seed in seeds:
        print(f"\n=== seed {seed}")
        _, results = run_benchmark(
            scenario,
            str(base_path),
            configs,
            rounds=args.rounds,
            crowd=crowd,
            seed=seed,
            eval_per_intent=args.eval_per_intent or (3 if args.quick else 2),
        )
        for name, rounds in results.items():
            finals[name].append(rounds[-1].measurement)
    if len(seeds) > 1:
        print("\n" + spread_table(finals))
    print(f"\ntotal {time.monotonic() - started:.0f}s")
    return 0


def _build_base(quick: bool, scenario, workdir: Path, build_quick_base) -> Path:
    if quick:
        return build_quick_base(scenario, workdir / "checkpoints" / "quick-base")
    from learning.starter.training import StarterConfig, build_starter_model
    from serving.checkpoints import write_checkpoint

    config = StarterConfig()
    build = build_starter_model(config)
    destination = workdir / "checkpoints" / "starter-base"
    return write_checkpoint(build.model, build.tokenizer, destination, {"config": config.as_dict()})


def _arm(spec: str, parser: argparse.ArgumentParser):
    """``NAME:key=value,...`` as a BenchConfig; values are numbers where they parse as one."""
    from bench.learning.runner import BenchConfig

    name, _, assignments = spec.partition(":")
    overrides: dict[str, object] = {}
    for assignment in filter(None, assignments.split(",")):
        key, _, value = assignment.partition("=")
        if not key or not value:
            parser.error(f"--arm {spec}: write key=value pairs separated by commas")
        try:
            overrides[key] = int(value)
        except ValueError:
            try:
                overrides[key] = float(value)
            except ValueError:
                overrides[key] = value
    return BenchConfig(name, overrides)


def _defaults(settings) -> str:
    return (
        f"α={settings.LEARNING_RATE} λ={settings.LEARNING_ANCHOR_STRENGTH}"
        f" Ω={settings.LEARNING_REGULARIZER} loss={settings.LEARNING_LOSS}"
        f" epochs={settings.LEARNING_EPOCHS} replay={settings.LEARNING_REPLAY_SHARE}"
        f" lora={settings.LEARNING_LORA_RANK}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
