"""The work of one claimed training run: examples → anchor → update → gate → registration.

``runs.execute_training_run`` claims the run and calls ``execute_claimed_run``; whatever this
module raises fails the run, and the active model stays as it was. The candidate is written to
a temporary directory and renamed into place, and the active version changes only inside
``activate_version``'s transaction, after the gate.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from learning.adapters import adapter_anchor_state, new_adapter, parameters_set_to, state_digest
from learning.evaluation import (
    Encoded,
    GoldenCase,
    encode_prompts,
    measure_model,
    reply_logprob_sums,
)
from learning.examples import ExampleSet, build_examples_from_feedback
from learning.feedback import mark_learned
from learning.fisher import cached_fisher, fisher_sample
from learning.gate import judge_candidate
from learning.models import ModelVersion, TrainingRun
from learning.precision import precision_name
from learning.protected import (
    active_golden_cases,
    drop_golden_overrides,
    knowledge_golden_cases,
)
from learning.retention import is_grounded, known_intent_count, retention_prompts
from learning.run_progress import enter_phase
from learning.run_progress import save_run as _save
from learning.run_progress import step_reporter as _progress_reporter
from learning.training import Hyperparameters, planned_steps, train_candidate
from learning.versions import LearningError, anchor_for, promote_version, register_version
from serving.chat_template import padding_id
from serving.checkpoints import BASE_CHECKPOINT_KEY, load_checkpoint, pick_device, write_checkpoint


@dataclass(frozen=True)
class RunSettings:
    """What one run reads from the settings, read once as it starts and passed down.

    The hyper-parameters are the run's own: read from the settings when it was requested and
    stored on its row.
    """

    hyperparameters: Hyperparameters
    require_approval: bool
    unreviewed_text: bool
    network_share: float
    per_owner_cap: int
    heldout_share: float
    max_perplexity_rise: float
    fisher_max_examples: int
    device: torch.device
    checkpoint_dir: Path

    @classmethod
    def for_run(cls, run: TrainingRun) -> RunSettings:
        return cls(
            hyperparameters=Hyperparameters.from_settings(run.hyperparameters),
            require_approval=settings.LEARNING_REQUIRE_APPROVAL,
            unreviewed_text=settings.LEARNING_TRAIN_UNREVIEWED_TEXT,
            network_share=settings.LEARNING_MAX_NETWORK_SHARE,
            per_owner_cap=settings.LEARNING_PER_OWNER_CAP,
            heldout_share=settings.LEARNING_HELDOUT_SHARE,
            max_perplexity_rise=settings.LEARNING_MAX_PERPLEXITY_RISE,
            fisher_max_examples=settings.LEARNING_FISHER_MAX_EXAMPLES,
            device=pick_device(settings.LEARNING_DEVICE),
            checkpoint_dir=Path(settings.CHECKPOINT_DIR),
        )


@dataclass(frozen=True)
class _RunInputs:
    """What a run starts from: the parent model it fine-tunes, its anchor, the data."""

    parent: ModelVersion
    anchor: ModelVersion
    # With LoRA: the frozen base the adapter applies to (θ₀ when anchored on the base).
    adapter_base: ModelVersion | None
    known_intents: int | None  # corpus intents the anchor was trained on (None: all)
    grounded: bool  # the anchor answers from articles: retention and golden prompts show them
    model: Any  # the parent's weights (with LoRA: an adapter on its base), trained in place
    tokenizer: Any
    pad_id: int
    examples: ExampleSet
    replay: list[Encoded]
    # Measured before and after training: read once, so that both measures see the same.
    retention: list[Encoded]
    golden_cases: list[GoldenCase]


@dataclass(frozen=True)
class _AnchorTerms:
    """θ₀ and what the regularized update weighs the pull towards it with."""

    state: dict[str, torch.Tensor]
    fisher: dict[str, torch.Tensor] | None  # EWC weights (regularizer "ewc")
    reference_logps: dict[int, float] | None  # θ₀ log-probability per example (loss "kto")


def execute_claimed_run(run: TrainingRun) -> None:
    """Train a candidate for ``run``, judge it and register it (promoted or rejected).

    Raises when the run cannot go on (no active version, no usable feedback, …).
    """
    started = time.monotonic()
    config = RunSettings.for_run(run)
    inputs = _load_inputs(run, config)
    anchor = _prepare_anchor(run, inputs, config)
    enter_phase(run, "measuring")
    metrics_before = _measure(inputs, config)
    _save(run, metrics_before=metrics_before, heartbeat_at=timezone.now())
    metrics_after = _train(run, inputs, anchor, config)
    enter_phase(run, "saving")
    _judge_and_register(run, inputs, config, metrics_before, metrics_after, started=started)


def _load_inputs(run: TrainingRun, config: RunSettings) -> _RunInputs:
    """The active version's model and the examples from feedback; stored on the run."""
    hp = config.hyperparameters
    parent = ModelVersion.objects.active().first()
    if parent is None:
        raise LearningError("No model version is active: nothing to fine-tune.")
    enter_phase(run, "loading")
    model, tokenizer, adapter_base = _trainable_model(parent, hp, config.device)
    enter_phase(run, "examples")
    if adapter_base is not None and hp.anchor == "base":
        anchor = adapter_base  # with LoRA, θ₀ is the frozen base
    else:
        anchor = anchor_for(parent, hp.anchor)
    known = known_intent_count(anchor.checkpoint_path)  # what the base knew
    grounded = is_grounded(anchor.checkpoint_path)
    pad_id = padding_id(tokenizer)
    examples = build_examples_from_feedback(
        tokenizer,
        require_approval=config.require_approval,
        unreviewed_text=config.unreviewed_text,
        network_share=config.network_share,
        per_owner_cap=config.per_owner_cap,
        max_tokens=hp.max_tokens,
        heldout_share=config.heldout_share,
        seed=hp.seed,
    )
    golden_cases = active_golden_cases(grounded=grounded)
    if grounded:  # the knowledge base's own promises: the gate's golden set is never empty
        golden_cases += knowledge_golden_cases(settings.LEARNING_GOLDEN_FROM_KNOWLEDGE)
    protected = drop_golden_overrides(
        model,
        tokenizer,
        examples,
        golden_cases,
        device=config.device,
        progress=enter_phase(run, "protecting"),
    )
    if not examples.train:
        if protected:
            raise LearningError(
                f"All {protected} examples would overwrite golden answers: "
                "review that feedback, or update the golden examples if the policy changed."
            )
        raise LearningError("No usable feedback to learn from.")
    replay = (
        _encoded_retention("replay", tokenizer, known, grounded, hp) if hp.replay_share > 0 else []
    )
    _save(
        run,
        parent=parent,
        anchor=anchor,
        example_counts=examples.counts,
        data_hash=examples.data_hash,
        total_steps=planned_steps(len(examples.train), hp),
        heartbeat_at=timezone.now(),
    )
    return _RunInputs(
        parent=parent,
        anchor=anchor,
        adapter_base=adapter_base,
        known_intents=known,
        grounded=grounded,
        model=model,
        tokenizer=tokenizer,
        pad_id=pad_id,
        examples=examples,
        replay=replay,
        retention=_encoded_retention("gate", tokenizer, known, grounded, hp),
        golden_cases=golden_cases,
    )


def _trainable_model(
    parent: ModelVersion, hp: Hyperparameters, device: torch.device
) -> tuple[Any, Any, ModelVersion | None]:
    """(model, tokenizer, the adapter's frozen base or None): the parent as the run trains it.

    Without LoRA, all of the parent's weights (an adapter parent merged into its base). With
    LoRA, the parent's own adapter, continued on its base; or a new adapter on a full parent,
    which is then the base.
    """
    if hp.lora_rank and parent.adapter_base_id:
        model, tokenizer = load_checkpoint(
            parent.checkpoint_path, device=device, trainable_adapter=True
        )
        return model, tokenizer, parent.adapter_base
    model, tokenizer = load_checkpoint(parent.checkpoint_path, device=device)
    if not hp.lora_rank:
        return model, tokenizer, None
    adapted = new_adapter(
        model,
        rank=hp.lora_rank,
        alpha=hp.lora_alpha,
        dropout=hp.lora_dropout,
        targets=hp.lora_targets,
        seed=hp.seed,
    )
    return adapted, tokenizer, parent


def _prepare_anchor(run: TrainingRun, inputs: _RunInputs, config: RunSettings) -> _AnchorTerms:
    """θ₀'s weights, and its Fisher (EWC) or its log-probabilities of the examples (KTO).

    With LoRA, θ₀ is in the adapter's parameters (``learning.adapters``), and both are measured
    on the run's model with the adapter set to θ₀ for the while; the Fisher of an adapter's θ₀
    is cached under its digest.
    """
    hp = config.hyperparameters
    if inputs.adapter_base is not None:
        anchor_model = inputs.model
        state = adapter_anchor_state(inputs.model, toward_base=hp.anchor == "base")
        at_anchor = parameters_set_to(inputs.model, state)
        fisher_key = f"{inputs.anchor.name}.adapter-{state_digest(state)[:16]}"
    else:
        if inputs.anchor.pk == inputs.parent.pk:
            anchor_model = inputs.model
        else:
            anchor_model, _ = load_checkpoint(inputs.anchor.checkpoint_path, device=config.device)
        state = {n: p.detach().clone() for n, p in anchor_model.named_parameters()}
        at_anchor = contextlib.nullcontext()
        fisher_key = inputs.anchor.name
    fisher = reference = None
    with at_anchor:
        if hp.regularizer == "ewc":
            sample = fisher_sample(
                inputs.replay
                or _encoded_retention(
                    "replay", inputs.tokenizer, inputs.known_intents, inputs.grounded, hp
                ),
                config.fisher_max_examples,
            )
            grounding = ".grounded" if inputs.grounded else ""
            fisher = cached_fisher(
                config.checkpoint_dir / "fisher",
                f"{fisher_key}.n{len(sample)}{grounding}",
                anchor_model,
                sample,
                pad_id=inputs.pad_id,
                device=config.device,
                on_miss=lambda count: enter_phase(run, "fisher", count),
            )
        if hp.loss == "kto":
            sums, _ = reply_logprob_sums(
                anchor_model,
                [(e.prompt_ids, e.reply_ids, e.label) for e in inputs.examples.train],
                pad_id=inputs.pad_id,
                device=config.device,
            )
            reference = dict(enumerate(sums.tolist()))
    return _AnchorTerms(state=state, fisher=fisher, reference_logps=reference)


def _encoded_retention(
    which: str, tokenizer: Any, known_intents: int | None, grounded: bool, hp: Hyperparameters
) -> list[Encoded]:
    """The encoded ``"gate"`` or ``"replay"`` retention prompts."""
    prompts = retention_prompts(which, grounded=grounded, max_intents=known_intents)
    return encode_prompts(tokenizer, prompts, max_tokens=hp.max_tokens)


def _measure(inputs: _RunInputs, config: RunSettings) -> dict[str, Any]:
    return measure_model(
        inputs.model,
        inputs.tokenizer,
        inputs.examples.heldout,
        retention=inputs.retention,
        golden_cases=inputs.golden_cases,
        max_tokens=config.hyperparameters.max_tokens,
    )


def _train(
    run: TrainingRun, inputs: _RunInputs, anchor: _AnchorTerms, config: RunSettings
) -> dict[str, Any]:
    """Fine-tune the parent's model in place; its metrics afterwards, with the training time."""
    enter_phase(run, "training")
    train_started = time.monotonic()
    losses = train_candidate(
        inputs.model,
        anchor.state,
        inputs.examples.train,
        inputs.replay,
        config.hyperparameters,
        pad_id=inputs.pad_id,
        fisher=anchor.fisher,
        reference_logps=anchor.reference_logps,
        device=config.device,
        progress=_progress_reporter(run),
    )
    train_seconds = time.monotonic() - train_started
    enter_phase(run, "gate")
    metrics_after = _measure(inputs, config)
    metrics_after.update(
        {
            "train_seconds": round(train_seconds, 2),
            "final_loss": losses[-1] if losses else None,
            "precision": precision_name(config.hyperparameters.autocast, config.device),
        }
    )
    return metrics_after


def _judge_and_register(
    run: TrainingRun,
    inputs: _RunInputs,
    config: RunSettings,
    metrics_before: dict[str, Any],
    metrics_after: dict[str, Any],
    *,
    started: float,
) -> None:
    """Gate the candidate, write its checkpoint, register it; promote it when it passed."""
    decision = judge_candidate(
        metrics_before, metrics_after, max_perplexity_rise=config.max_perplexity_rise
    )
    name = f"run-{run.pk}-a{run.attempts}"
    metadata = {
        "name": name,
        "parent": inputs.parent.name,
        "anchor": inputs.anchor.name,
        "hyperparameters": config.hyperparameters.as_dict(),
        "data_hash": inputs.examples.data_hash,
        "example_counts": inputs.examples.counts,
        "metrics": metrics_after,
        "gate": {"passed": decision.passed, "reasons": decision.reasons},
        "training_run": run.pk,
    }
    if inputs.adapter_base is not None:  # the checkpoint holds the adapter alone
        metadata["adapter_base"] = inputs.adapter_base.name
        metadata[BASE_CHECKPOINT_KEY] = inputs.adapter_base.checkpoint_path
    inputs.model.to("cpu")
    path = write_checkpoint(inputs.model, inputs.tokenizer, config.checkpoint_dir / name, metadata)
    with transaction.atomic():
        version = register_version(
            name,
            str(path),
            ModelVersion.Source.TRAINED,
            parent=inputs.parent,
            anchor=inputs.anchor,
            metrics=metrics_after,
            adapter_base=inputs.adapter_base,
        )
        if decision.passed:
            promote_version(version, note=f"Promoted by the gate after training run #{run.pk}")
            mark_learned(inputs.examples.feedback_ids, run)
            status = TrainingRun.Status.SUCCEEDED
        else:
            ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.REJECTED)
            status = TrainingRun.Status.REJECTED
        metrics_after["seconds_total"] = round(time.monotonic() - started, 2)
        _save(
            run,
            status=status,
            result_version=version,
            metrics_after=metrics_after,
            gate_passed=decision.passed,
            gate_reasons=decision.reasons,
            finished_at=timezone.now(),
        )
