"""Tuning for the business's knowledge base, as a training run of its own kind.

After an import (``knowledge.signals.knowledge_imported``), from the admin ("Tune for the
current knowledge base") or ``manage.py tune_for_knowledge``, a run of kind ``knowledge`` is
queued for the Celery worker like any training run (one open run at a time, claimed,
heartbeat, progress with the time left). The worker:

1. builds the grounded examples from the active articles and their example questions, and the
   declines in the profile's words (``grounded_tuning.tuning_data``), holding one example
   question per article out;
2. tunes the pretrained base on them (``grounded_tuning.tuned_version``), reporting each step;
3. gates: the candidate and the active version answer the same held-out questions
   (``GATE_QUESTIONS`` at most, spread over the articles), each shown what the chat would show;
   a reply counts as answered when it states its article (``answers_article``). The candidate
   is promoted when it answers at least as many as the version it replaces; it then becomes
   a new root, the θ₀ of the learning runs after it. Otherwise it is kept, rejected.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from knowledge.answering import is_decline
from knowledge.faithfulness import check_reply, content_words
from learning.grounded_tuning import (
    HeldOut,
    Log,
    TuningConfig,
    TuningError,
    grounded_prompt,
    tuned_version,
    tuning_data,
)
from learning.models import ModelVersion, TrainingRun
from learning.run_progress import enter_phase, step_reporter
from learning.run_progress import save_run as _save
from learning.versions import promote_version

GATE_QUESTIONS = 32  # two batches of 16: about a minute a model on two cores
MIN_ARTICLE_RECALL = 0.5  # share of the article's content words a reply must state


def answers_article(reply: str, article_text: str) -> bool:
    """Whether ``reply`` answers from its article: not a decline, passes the faithfulness guard
    and states at least MIN_ARTICLE_RECALL of the article's content words."""
    article = {"title": "", "text": article_text}
    if is_decline(reply) or check_reply(reply, [article], is_decline=False):
        return False
    wanted = set(content_words(article_text))
    if not wanted:
        return True
    return len(wanted & set(content_words(reply))) / len(wanted) >= MIN_ARTICLE_RECALL


@dataclass(frozen=True)
class GateScore:
    answered: int
    asked: int

    @property
    def share(self) -> float:
        return self.answered / self.asked if self.asked else 0.0


def gate_questions(held_out: Sequence[HeldOut], *, seed: int = 0) -> list[HeldOut]:
    """At most GATE_QUESTIONS held-out questions whose own article is retrieved for them (the
    model can only be judged on a question it is shown the answer to)."""
    chosen = list(held_out)
    random.Random(seed).shuffle(chosen)
    usable = []
    for item in chosen:
        if item.article_text in grounded_prompt(item.question, as_unseen=True).texts:
            usable.append(item)
        if len(usable) == GATE_QUESTIONS:
            break
    return usable


def score_version(version: ModelVersion, questions: Sequence[HeldOut]) -> GateScore:
    """How many of ``questions`` ``version`` answers from their articles (greedy, as served)."""
    from serving.chat_template import greedy_continuations, prompt_ids
    from serving.checkpoints import load_checkpoint

    if not questions:
        return GateScore(0, 0)
    model, tokenizer = load_checkpoint(version.checkpoint_path)
    prompts = [
        prompt_ids(tokenizer, grounded_prompt(item.question, as_unseen=True).turns)
        for item in questions
    ]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # less padding
    replies = greedy_continuations(
        model,
        tokenizer,
        [prompts[i] for i in order],
        max_new_tokens=settings.GENERATION_MAX_NEW_TOKENS,
        batch_size=16,
    )
    by_index = dict(zip(order, replies, strict=True))
    answered = sum(
        answers_article(by_index[i], item.article_text) for i, item in enumerate(questions)
    )
    return GateScore(answered, len(questions))


def pretrained_base() -> ModelVersion:
    """The pretrained model the knowledge base's tunings start from: the newest registered."""
    base = (
        ModelVersion.objects.filter(source=ModelVersion.Source.PRETRAINED)
        .order_by("-created_at", "-id")
        .first()
    )
    if base is None:
        raise TuningError(
            "No pretrained base model is registered: run `manage.py ensure_base_model` first "
            "(bin/start does)."
        )
    return base


def execute_knowledge_run(run: TrainingRun, *, log: Log | None = None) -> None:
    """Do a claimed run of kind ``knowledge`` (module docstring); its outcome is on the run."""
    started = time.monotonic()
    log = log or (lambda line: None)
    config = TuningConfig(**run.hyperparameters.get("tuning", {}))
    base = pretrained_base()
    enter_phase(run, "examples")
    data = tuning_data(config, log=log)
    answers = sum(not example.declines for example in data.examples)
    questions = gate_questions(data.held_out, seed=config.seed)
    _save(
        run,
        example_counts={
            "articles": data.article_count,
            "answers": answers,
            "declines": len(data.examples) - answers,
            "held_out": len(questions),
        },
    )
    enter_phase(run, "tuning")
    candidate = tuned_version(base, data.examples, config, log=log, progress=step_reporter(run))
    active = ModelVersion.objects.active().first()
    enter_phase(run, "gate")
    after = score_version(candidate, questions)
    before = (
        score_version(active, questions)
        if active is not None and active.pk != candidate.pk
        else None
    )
    passed = before is None or after.answered >= before.answered
    reasons = [
        "held-out example questions answered from their article: "
        + (f"{before.answered}/{before.asked} before, " if before else "")
        + f"{after.answered}/{after.asked} after"
    ]
    reasons.append("passed: at least as many" if passed else "rejected: fewer than before")
    with transaction.atomic():
        if passed:
            if active is None or active.pk != candidate.pk:
                promote_version(
                    candidate, note=f"Tuned for the knowledge base (training run #{run.pk})"
                )
            status = TrainingRun.Status.SUCCEEDED
        else:
            ModelVersion.objects.filter(pk=candidate.pk, status=ModelVersion.Status.READY).update(
                status=ModelVersion.Status.REJECTED
            )
            status = TrainingRun.Status.REJECTED
        _save(
            run,
            status=status,
            result_version=candidate,
            metrics_before=_metrics(before),
            metrics_after={**_metrics(after), "seconds_total": round(time.monotonic() - started)},
            gate_passed=passed,
            gate_reasons=reasons,
            finished_at=timezone.now(),
        )


def tuning_hyperparameters(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A knowledge run's hyperparameters: the tuning config, with ``overrides``."""
    known = set(TuningConfig.__dataclass_fields__)
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise ValueError(
            f"Unknown tuning setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return {"tuning": asdict(TuningConfig(**(overrides or {})))}


def _metrics(score: GateScore | None) -> dict[str, Any]:
    if score is None:
        return {}
    return {
        "held_out_answered": score.answered,
        "held_out_asked": score.asked,
        "held_out_share": round(score.share, 4),
    }
