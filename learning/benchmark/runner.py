"""Rounds of feedback → retrain → gate → promotion, per configuration, and the tables they make.

Every configuration starts from the same base version and the same seed: customers, their
questions and their ratings are drawn from seeded generators, so the first round's feedback is
the same for all configurations, and later rounds differ only through what the model learned.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learning.benchmark.customers import Crowd, plan_round, run_visits
from learning.benchmark.scenario import Scenario, Topic


@dataclass(frozen=True)
class BenchConfig:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


def standard_configs(default_regularizer: str, default_loss: str) -> list[BenchConfig]:
    """Default beside λ = 0, the other Ω kind, the other loss, and fine-tune + averaging."""
    other_reg = "ewc" if default_regularizer == "l2sp" else "l2sp"
    other_loss = "kto" if default_loss == "sft_ul" else "sft_ul"
    return [
        BenchConfig("default"),
        BenchConfig("lambda=0", {"anchor_strength": 0.0}),
        BenchConfig(other_reg, {"regularizer": other_reg}),
        BenchConfig(other_loss, {"loss": other_loss}),
        BenchConfig("finetune+avg", {"anchor_strength": 0.0, "average_with_anchor": 0.5}),
    ]


@dataclass
class Measurement:
    changed_seen: float
    changed_heldout: float
    unchanged: float
    perplexity: float


@dataclass
class RoundResult:
    round_no: int
    measurement: Measurement
    thumbs_up: float | None = None
    promoted: bool | None = None
    train_seconds: float | None = None
    gate_reasons: list[str] = field(default_factory=list)


def measure(path: str, scenario: Scenario, *, eval_per_intent: int = 2) -> Measurement:
    """Greedy replies judged for the policy facts, and the retention perplexity."""
    from learning.chat_format import greedy_replies, padding_id
    from learning.checkpoints import load_checkpoint
    from learning.evaluation import encode_pairs, perplexity
    from learning.retention import gate_retention_pairs

    model, tokenizer = load_checkpoint(path)
    seen = [(t, q) for t in scenario.changed for q in t.seen[::2]]
    heldout = [(t, q) for t in scenario.changed for q in t.heldout]
    unchanged = [
        (t, q)
        for t in scenario.unchanged
        for q in (*t.seen[:1], *t.heldout[: max(0, eval_per_intent - 1)])
    ]
    asked = seen + heldout + unchanged
    replies = greedy_replies(model, tokenizer, [q for _, q in asked])
    scores = [t.is_answered_by(r) for (t, _), r in zip(asked, replies, strict=True)]

    def share(start: int, items: list[tuple[Topic, str]]) -> float:
        return sum(scores[start : start + len(items)]) / max(1, len(items))

    retention = encode_pairs(tokenizer, gate_retention_pairs(), max_tokens=256)
    return Measurement(
        changed_seen=share(0, seen),
        changed_heldout=share(len(seen), heldout),
        unchanged=share(len(seen) + len(heldout), unchanged),
        perplexity=perplexity(model, retention, pad_id=padding_id(tokenizer)),
    )


def reset_to_base(base_name: str, scenario: Scenario) -> Any:
    """Forget every conversation, run and trained version; the base is active again."""
    from conversations.models import Conversation
    from learning.models import GoldenExample, ModelVersion, TrainingRun
    from learning.serving import forget_active_version
    from learning.versions import activate_version

    Conversation.objects.all().delete()
    TrainingRun.objects.all().delete()
    for version in ModelVersion.objects.exclude(name=base_name):
        shutil.rmtree(version.checkpoint_path, ignore_errors=True)
        version.delete()
    base = ModelVersion.objects.get(name=base_name)
    if base.status != ModelVersion.Status.ACTIVE:
        base = activate_version(base, note="benchmark: back to the base")
    GoldenExample.objects.all().delete()
    for question, answer, facts in scenario.golden_cases():
        GoldenExample.objects.create(
            question=question, expected_answer=answer, required_facts=facts
        )
    forget_active_version()
    return base


def run_config(
    config: BenchConfig,
    scenario: Scenario,
    base_name: str,
    base_measurement: Measurement,
    *,
    rounds: int,
    crowd: Crowd,
    seed: int,
    eval_per_intent: int,
    log=print,
) -> list[RoundResult]:
    from learning.models import ModelVersion, TrainingRun
    from learning.runs import execute_training_run, request_training_run
    from learning.serving import forget_active_version

    reset_to_base(base_name, scenario)
    results = [RoundResult(0, base_measurement)]
    for round_no in range(1, rounds + 1):
        rng = random.Random(f"{seed}-{round_no}")
        visits = plan_round(scenario, crowd, rng, round_no)

        started = time.monotonic()
        tally = asyncio.run(_talk(visits, scenario, crowd, seed * 1000 + round_no))
        chat_seconds = time.monotonic() - started
        run, _ = request_training_run(
            trigger=TrainingRun.Trigger.COMMAND, overrides=config.overrides, enqueue=False
        )
        run = execute_training_run(run.pk)
        if run is None or run.status == TrainingRun.Status.FAILED:
            raise RuntimeError(f"training run failed: {run.error if run else 'not claimed'}")
        forget_active_version()
        active = ModelVersion.objects.active().get()
        measurement = measure(active.checkpoint_path, scenario, eval_per_intent=eval_per_intent)
        result = RoundResult(
            round_no,
            measurement,
            thumbs_up=tally[1] / max(1, tally[1] + tally[-1]),
            promoted=run.gate_passed,
            train_seconds=(run.metrics_after or {}).get("train_seconds"),
            gate_reasons=list(run.gate_reasons),
        )
        results.append(result)
        log(
            f"  [{config.name}] round {round_no}: {len(visits)} conversations in"
            f" {chat_seconds:.0f}s, gate {'promoted' if run.gate_passed else 'rejected'}"
        )
        if not run.gate_passed:
            for reason in run.gate_reasons:
                log(f"    {reason}")
    return results


async def _talk(visits, scenario: Scenario, crowd: Crowd, seed: int) -> Any:
    from conversations.consumers import wait_for_replies

    tally = await run_visits(visits, scenario, crowd, seed=seed, concurrency=crowd.concurrency)
    await wait_for_replies()
    return tally


def round_table(config: BenchConfig, results: list[RoundResult], base: Measurement) -> str:
    header = (
        f"{'round':>5} {'changed seen':>13} {'changed held-out':>17} {'unchanged':>10}"
        f" {'(vs base)':>9} {'ppl/base':>9} {'thumbs-up':>10} {'gate':>9} {'train s':>8}"
    )
    lines = [f"== {config.name} {config.overrides or ''}", header]
    for r in results:
        m = r.measurement
        gate = "-" if r.promoted is None else ("promoted" if r.promoted else "rejected")
        lines.append(
            f"{r.round_no:>5} {m.changed_seen:>13.0%} {m.changed_heldout:>17.0%}"
            f" {m.unchanged:>10.0%} {_ratio(m.unchanged, base.unchanged):>9}"
            f" {m.perplexity / base.perplexity:>9.3f}"
            f" {'-' if r.thumbs_up is None else f'{r.thumbs_up:.0%}':>10} {gate:>9}"
            f" {'-' if r.train_seconds is None else f'{r.train_seconds:.0f}':>8}"
        )
    return "\n".join(lines)


def summary_table(all_results: dict[str, list[RoundResult]], base: Measurement) -> str:
    lines = [
        f"{'configuration':<16} {'changed held-out':>17} {'unchanged':>10} {'(vs base)':>9}"
        f" {'ppl/base':>9} {'promoted':>9}"
    ]
    for name, results in all_results.items():
        m = results[-1].measurement
        promoted = sum(bool(r.promoted) for r in results[1:])
        lines.append(
            f"{name:<16} {m.changed_heldout:>17.0%} {m.unchanged:>10.0%}"
            f" {_ratio(m.unchanged, base.unchanged):>9} {m.perplexity / base.perplexity:>9.3f}"
            f" {promoted:>5}/{len(results) - 1}"
        )
    return "\n".join(lines)


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.0%}" if base else "-"


def write_retention_corpus(scenario: Scenario, directory: Path) -> Path:
    import json

    path = directory / "retention-corpus.json"
    path.write_text(json.dumps(scenario.retention_corpus()), encoding="utf-8")
    return path


def build_quick_base(scenario: Scenario, destination: Path, *, seed: int = 0) -> Path:
    """A small starter model of the quick scenario's intents (old answers), built in seconds."""
    from learning.checkpoints import write_checkpoint
    from learning.starter.training import StarterConfig, build_starter_model

    config = StarterConfig.tiny(
        seed=seed,
        max_intents=None,
        max_dialogues=0,
        hidden_size=96,
        intermediate_size=192,
        epochs=30,
        augment=True,
    )
    build = build_starter_model(config, corpus=scenario.base_corpus)
    metadata = {"name": destination.name, "config": config.as_dict(), "data_hash": build.data_hash}
    metadata["config"]["max_intents"] = None  # trained on the scenario's own intent list
    return write_checkpoint(build.model, build.tokenizer, destination, metadata)


def run_benchmark(
    scenario: Scenario,
    base_path: str,
    configs: list[BenchConfig],
    *,
    rounds: int,
    crowd: Crowd,
    seed: int = 0,
    eval_per_intent: int = 2,
    log=print,
) -> tuple[Measurement, dict[str, list[RoundResult]]]:
    """Register ``base_path`` as the base, then every configuration's rounds; prints tables."""
    from learning.models import ModelVersion
    from learning.versions import register_version

    base_name = f"bench-base-{Path(base_path).name}"
    if not ModelVersion.objects.filter(name=base_name).exists():
        register_version(base_name, str(base_path), ModelVersion.Source.STARTER)
    reset_to_base(base_name, scenario)
    base = measure(str(base_path), scenario, eval_per_intent=eval_per_intent)
    results: dict[str, list[RoundResult]] = {}
    for config in configs:
        started = time.monotonic()
        results[config.name] = run_config(
            config,
            scenario,
            base_name,
            base,
            rounds=rounds,
            crowd=crowd,
            seed=seed,
            eval_per_intent=eval_per_intent,
            log=log,
        )
        log(round_table(config, results[config.name], base))
        log(f"  ({time.monotonic() - started:.0f}s)\n")
    log(summary_table(results, base))
    return base, results
