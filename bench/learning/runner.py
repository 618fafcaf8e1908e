"""Rounds of feedback → retrain → gate → promotion, per configuration, and the tables they make.

Every configuration starts from the same base version and the same seed: customers, their
questions and their ratings are drawn from seeded generators, so the first round's feedback is
the same for all configurations, and later rounds differ only through what the model learned.

A base tuned to answer from the knowledge base (``learning.retention.is_grounded``) is measured
as it serves: the knowledge base is seeded from the scenario's base corpus (the old policies),
each question is retrieved and answered from its article, or declined below the threshold
(``conversations.services.decide_reply``), and off-topic questions are asked too. A
configuration with ``edit_after`` is the shop that edits the changed articles after that round
(``knowledge.services.do_save_article``, as staff would in the admin); the others leave the
knowledge base stating the old policies, so only the feedback can teach the change.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.learning.customers import Crowd, plan_round, run_visits
from bench.learning.scenario import Scenario, Topic

OFF_TOPIC_PATH = Path(__file__).with_name("off_topic.json")


@dataclass(frozen=True)
class BenchConfig:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    # Staff edit the changed intents' articles after this round (0: never; grounded bases):
    # writing the new policies themselves ("staff"), or accepting the customers' corrections
    # proposed as article edits ("proposals": knowledge.proposals; the rest dismissed).
    edit_after: int = 0
    edit_from: str = "staff"


def standard_configs(
    default_regularizer: str, default_loss: str, *, grounded: bool = False
) -> list[BenchConfig]:
    """Default beside λ = 0, the other Ω kind, the other loss, fine-tune + averaging and LoRA
    (Ω on the adapter's delta); on a grounded base also the shop whose staff edit the changed
    articles after the first round."""
    other_reg = "ewc" if default_regularizer == "l2sp" else "l2sp"
    other_loss = "kto" if default_loss == "sft_ul" else "sft_ul"
    configs = [
        BenchConfig("default"),
        BenchConfig("lambda=0", {"anchor_strength": 0.0}),
        BenchConfig(other_reg, {"regularizer": other_reg}),
        BenchConfig(other_loss, {"loss": other_loss}),
        BenchConfig("finetune+avg", {"anchor_strength": 0.0, "average_with_anchor": 0.5}),
        BenchConfig("lora", {"lora_rank": 8}),
    ]
    if grounded:
        configs.append(BenchConfig("staff-edit", edit_after=1))
        configs.append(BenchConfig("proposals", edit_after=1, edit_from="proposals"))
    return configs


@dataclass
class Measurement:
    changed_seen: float
    changed_heldout: float
    unchanged: float
    perplexity: float
    off_topic_declined: float | None = None  # grounded bases only


@dataclass
class RoundResult:
    round_no: int
    measurement: Measurement
    label: str = ""  # what the row is when it is not a round's training (the article edit)
    thumbs_up: float | None = None
    promoted: bool | None = None
    train_seconds: float | None = None
    gate_reasons: list[str] = field(default_factory=list)
    # The gate's golden-set share (replies stating the protected facts), parent → candidate.
    golden: tuple[float, float] | None = None


def measure(
    path: str, scenario: Scenario, *, eval_per_intent: int = 2, grounded: bool = False
) -> Measurement:
    """Greedy replies judged for the policy facts, and the retention perplexity; a grounded
    base answers from the articles retrieved for each question, as it serves."""
    from learning.evaluation import encode_prompts, perplexity
    from learning.retention import retention_prompts
    from serving.chat_template import padding_id
    from serving.checkpoints import load_checkpoint

    model, tokenizer = load_checkpoint(path)
    seen = [(t, q) for t in scenario.changed for q in t.seen[::2]]
    heldout = [(t, q) for t in scenario.changed for q in t.heldout]
    unchanged = [
        (t, q)
        for t in scenario.unchanged
        for q in (*t.seen[:1], *t.heldout[: max(0, eval_per_intent - 1)])
    ]
    asked = seen + heldout + unchanged
    off_topic = _off_topic_questions() if grounded else []
    replies, declined = _replies(
        model, tokenizer, [q for _, q in asked] + off_topic, grounded=grounded
    )
    scores = [t.is_answered_by(r) for (t, _), r in zip(asked, replies, strict=False)]

    def share(start: int, items: list[tuple[Topic, str]]) -> float:
        return sum(scores[start : start + len(items)]) / max(1, len(items))

    retention = encode_prompts(
        tokenizer, retention_prompts("gate", grounded=grounded), max_tokens=256
    )
    return Measurement(
        changed_seen=share(0, seen),
        changed_heldout=share(len(seen), heldout),
        unchanged=share(len(seen) + len(heldout), unchanged),
        perplexity=perplexity(model, retention, pad_id=padding_id(tokenizer)),
        off_topic_declined=(sum(declined[len(asked) :]) / len(off_topic) if off_topic else None),
    )


def _replies(
    model: Any, tokenizer: Any, questions: list[str], *, grounded: bool
) -> tuple[list[str], list[bool]]:
    """Each question's greedy reply, and whether it is a decline (grounded: the threshold's,
    or the model's own)."""
    from knowledge.answering import decide_reply, is_decline
    from knowledge.retrieval import retrieve_now
    from serving.chat_template import greedy_continuations, prompt_ids

    replies: dict[int, str] = {}
    prompts: dict[int, list[int]] = {}
    for n, question in enumerate(questions):
        turns = [{"role": "user", "content": question}]
        if grounded:
            plan = decide_reply(question, retrieve_now(question), turns)
            if plan.declined:
                replies[n] = plan.decline_text
                continue
            turns = plan.turns
        prompts[n] = prompt_ids(tokenizer, turns)
    generated = greedy_continuations(model, tokenizer, list(prompts.values()))
    replies.update(zip(prompts, generated, strict=True))
    texts = [replies[n] for n in range(len(questions))]
    return texts, [grounded and is_decline(text) for text in texts]


def _off_topic_questions() -> list[str]:
    return json.loads(OFF_TOPIC_PATH.read_text(encoding="utf-8"))["evaluation"]


def seed_knowledge_base(scenario: Scenario) -> None:
    """Articles of the scenario's base corpus (the old policies), embedded; an edited article
    is written back to its old text."""
    from knowledge.services import do_embed_articles, do_seed_articles

    do_seed_articles(scenario.base_corpus, force=True)
    do_embed_articles()


def edit_changed_articles(scenario: Scenario) -> None:
    """Staff write each changed policy into its article, as they would in the admin."""
    from knowledge.models import KnowledgeArticle
    from knowledge.services import do_save_article, intent_title

    for topic in scenario.changed:
        article = KnowledgeArticle.objects.get(title=intent_title(topic.name))
        article.text = topic.answer
        do_save_article(article)


def accept_proposed_edits(scenario: Scenario) -> tuple[int, int]:
    """Staff propose article edits from all corrections so far, accept for each changed
    article the proposal stating its new policy (they know it) and dismiss the others (the
    generous group's among them). Returns (articles edited, proposals dismissed)."""
    from django.db.models import Count

    from conversations.article_proposals import do_propose_edits
    from conversations.models import Feedback
    from knowledge.models import ArticleProposal
    from knowledge.proposals import do_accept_proposal, do_dismiss_proposals
    from knowledge.services import intent_title

    do_propose_edits(Feedback.objects.all())
    pending = ArticleProposal.objects.filter(status=ArticleProposal.Status.PENDING)
    accepted = 0
    for topic in scenario.changed:
        right = (
            pending.filter(article__title=intent_title(topic.name))
            .annotate(n=Count("feedback"))
            .order_by("-n")
        )
        chosen = next((p for p in right if topic.is_answered_by(p.text)), None)
        if chosen is not None:
            do_accept_proposal(chosen)
            accepted += 1
    return accepted, do_dismiss_proposals(pending)


def reset_to_base(base_name: str, scenario: Scenario, *, grounded: bool = False) -> Any:
    """Forget every conversation, run and trained version; the base is active again (and a
    grounded base's knowledge base states the old policies again)."""
    from conversations.models import Conversation
    from learning.models import GoldenExample, ModelVersion, TrainingRun
    from learning.versions import activate_version
    from serving.backends import forget_active_version

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
    if grounded:
        seed_knowledge_base(scenario)
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
    grounded: bool = False,
    log=print,
) -> list[RoundResult]:
    from learning.models import ModelVersion, TrainingRun
    from learning.runs import execute_training_run, request_training_run
    from serving.backends import forget_active_version

    reset_to_base(base_name, scenario, grounded=grounded)
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
        measurement = measure(
            active.checkpoint_path, scenario, eval_per_intent=eval_per_intent, grounded=grounded
        )
        result = RoundResult(
            round_no,
            measurement,
            thumbs_up=tally[1] / max(1, tally[1] + tally[-1]),
            promoted=run.gate_passed,
            train_seconds=(run.metrics_after or {}).get("train_seconds"),
            gate_reasons=list(run.gate_reasons),
            golden=_golden(run),
        )
        results.append(result)
        log(
            f"  [{config.name}] round {round_no}: {len(visits)} conversations in"
            f" {chat_seconds:.0f}s, gate {'promoted' if run.gate_passed else 'rejected'};"
            f" {_brief(measurement, base_measurement)}; golden set"
            f" {' → '.join(_share(g) for g in result.golden or (None,))}"
        )
        if not run.gate_passed:
            for reason in run.gate_reasons:
                log(f"    {reason}")
        if round_no == config.edit_after:
            if config.edit_from == "proposals":
                accepted, dismissed = accept_proposed_edits(scenario)
                log(
                    f"  [{config.name}] staff accepted proposals for {accepted} of the"
                    f" {len(scenario.changed)} changed articles and dismissed {dismissed}"
                )
            else:
                edit_changed_articles(scenario)
            edited = measure(
                active.checkpoint_path, scenario, eval_per_intent=eval_per_intent, grounded=grounded
            )
            results.append(RoundResult(round_no, edited, label="edit"))
            log(f"  [{config.name}] after the edit: {_brief(edited, base_measurement)}")
    return results


async def _talk(visits, scenario: Scenario, crowd: Crowd, seed: int) -> Any:
    from conversations.consumers import wait_for_replies

    tally = await run_visits(visits, scenario, crowd, seed=seed, concurrency=crowd.concurrency)
    await wait_for_replies()
    return tally


def round_table(config: BenchConfig, results: list[RoundResult], base: Measurement) -> str:
    header = (
        f"{'round':>6} {'changed seen':>13} {'changed held-out':>17} {'unchanged':>10}"
        f" {'(vs base)':>9} {'ppl/base':>9} {'off-topic':>10} {'thumbs-up':>10} {'gate':>9}"
        f" {'golden':>7} {'train s':>8}"
    )
    edit = (
        f", articles edited ({config.edit_from}) after round {config.edit_after}"
        if config.edit_after
        else ""
    )
    lines = [f"== {config.name} {config.overrides or ''}{edit}", header]
    for r in results:
        m = r.measurement
        gate = "-" if r.promoted is None else ("promoted" if r.promoted else "rejected")
        row = f"{r.round_no}{'+' + r.label if r.label else ''}"
        lines.append(
            f"{row:>6} {m.changed_seen:>13.0%} {m.changed_heldout:>17.0%}"
            f" {m.unchanged:>10.0%} {_ratio(m.unchanged, base.unchanged):>9}"
            f" {m.perplexity / base.perplexity:>9.3f} {_share(m.off_topic_declined):>10}"
            f" {_share(r.thumbs_up):>10} {gate:>9} {_share(r.golden[1] if r.golden else None):>7}"
            f" {'-' if r.train_seconds is None else f'{r.train_seconds:.0f}':>8}"
        )
    return "\n".join(lines)


def _golden(run: Any) -> tuple[float, float] | None:
    before = (run.metrics_before or {}).get("golden_fact_accuracy")
    after = (run.metrics_after or {}).get("golden_fact_accuracy")
    return None if before is None or after is None else (before, after)


def _brief(m: Measurement, base: Measurement) -> str:
    """One measurement on one line, for the log as the rounds go (a stopped run keeps it)."""
    return (
        f"changed held-out {m.changed_heldout:.0%}, seen {m.changed_seen:.0%}, unchanged"
        f" {m.unchanged:.0%}, ppl/base {m.perplexity / base.perplexity:.3f}, off-topic declined"
        f" {_share(m.off_topic_declined)}"
    )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def summary_table(all_results: dict[str, list[RoundResult]], base: Measurement) -> str:
    lines = [
        f"{'configuration':<16} {'changed held-out':>17} {'unchanged':>10} {'(vs base)':>9}"
        f" {'ppl/base':>9} {'off-topic':>10} {'promoted':>9}"
    ]
    for name, results in all_results.items():
        m = results[-1].measurement
        rounds = [r for r in results[1:] if not r.label]
        promoted = sum(bool(r.promoted) for r in rounds)
        lines.append(
            f"{name:<16} {m.changed_heldout:>17.0%} {m.unchanged:>10.0%}"
            f" {_ratio(m.unchanged, base.unchanged):>9} {m.perplexity / base.perplexity:>9.3f}"
            f" {_share(m.off_topic_declined):>10} {promoted:>5}/{len(rounds)}"
        )
    return "\n".join(lines)


def spread_table(finals: dict[str, list[Measurement]]) -> str:
    """Median and range over seeds of each configuration's last measurement."""
    lines = [f"{'configuration':<16} {'seeds':>5} {'changed held-out: median [min, max]':>37}"]
    for name, measurements in finals.items():
        values = sorted(m.changed_heldout for m in measurements)
        median = (
            values[len(values) // 2]
            if len(values) % 2
            else sum(values[len(values) // 2 - 1 : len(values) // 2 + 1]) / 2
        )
        lines.append(
            f"{name:<16} {len(values):>5} {median:>24.0%} [{values[0]:.0%}, {values[-1]:.0%}]"
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
    from learning.starter.training import StarterConfig, build_starter_model
    from serving.checkpoints import write_checkpoint

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
    from learning.retention import is_grounded
    from learning.versions import register_version

    base_name = f"bench-base-{Path(base_path).name}"
    if not ModelVersion.objects.filter(name=base_name).exists():
        register_version(base_name, str(base_path), ModelVersion.Source.STARTER)
    grounded = is_grounded(base_path)
    reset_to_base(base_name, scenario, grounded=grounded)
    base = measure(str(base_path), scenario, eval_per_intent=eval_per_intent, grounded=grounded)
    log(f"base: {_brief(base, base)}")
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
            grounded=grounded,
            log=log,
        )
        log(round_table(config, results[config.name], base))
        log(f"  ({time.monotonic() - started:.0f}s)\n")
    log(summary_table(results, base))
    return base, results
