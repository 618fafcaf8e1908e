"""LoRA adapters on the tiny model: what a run trains, the pull on the delta, adapter checkpoints,
a whole run that registers an adapter version the engine answers with; bf16 autocast."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
import torch
from safetensors.torch import load_file

from knowledge.demo.corpus import load_corpus
from learning import precision, runs
from learning.adapters import adapter_anchor_state, new_adapter
from learning.evaluation import encode_pairs
from learning.examples import TrainingExample
from learning.models import ModelVersion, TrainingRun
from learning.training import Hyperparameters, train_candidate
from learning.update import AnchoredAdam
from serving.chat_template import greedy_replies, padding_id
from serving.checkpoints import (
    BASE_CHECKPOINT_KEY,
    CheckpointError,
    load_checkpoint,
    write_checkpoint,
)
from serving.engine import GenerationEngine, GenerationOptions
from serving.generation import ActiveVersion
from tests.learning.consistent_feedback import (
    TINY_INTENTS,
    pin_promotable_hyperparameters,
    rate_consistently,
)

LORA = {"LEARNING_LORA_RANK": 4, "LEARNING_LORA_ALPHA": 8.0, "LEARNING_RATE": 3e-3}


def questions() -> list[str]:
    return [intent.questions[0] for intent in load_corpus().intents[:TINY_INTENTS]]


def corpus_examples(tokenizer) -> list[TrainingExample]:
    pairs = [
        (question, intent.answer)
        for intent in load_corpus().intents[:TINY_INTENTS]
        for question in intent.questions[:3]
    ]
    return [
        TrainingExample(prompt, reply, label, feedback_id=i, owner_key=f"o{i}")
        for i, (prompt, reply, label) in enumerate(encode_pairs(tokenizer, pairs, max_tokens=256))
    ]


def adapted_tiny_model(checkpoint, *, seed: int = 0):
    model, tokenizer = load_checkpoint(checkpoint)
    return new_adapter(model, rank=4, alpha=8.0, dropout=0.0, targets="all-linear", seed=seed), (
        tokenizer
    )


def give_the_adapter_a_delta(model, seed: int = 1) -> None:
    """B away from 0, as training would leave it: the adapter now changes what the model says."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)


def delta_norm(model) -> float:
    """‖ΔW‖ over every adapted layer: how far the adapter moves the model from its base."""
    from peft.tuners.lora import LoraLayer

    with torch.no_grad():
        norms = [
            module.get_delta_weight("default").norm()
            for module in model.modules()
            if isinstance(module, LoraLayer)
        ]
    return float(torch.linalg.vector_norm(torch.stack(norms)))


def hyperparameters(**overrides) -> Hyperparameters:
    fixed = {
        "regularizer": "l2sp",
        "replay_share": 0.0,
        "batch_size": 4,
        "autocast": "off",
        "lr": 1e-3,  # the tiny model's step (the defaults suit SmolLM2)
        "epochs": 6,
    }
    return Hyperparameters(**{**fixed, **overrides}).validated()


def test_lora_training_changes_only_the_adapter(tiny_checkpoint):
    base, _ = load_checkpoint(tiny_checkpoint)
    base_weights = {name: param.detach().clone() for name, param in base.named_parameters()}
    model, tokenizer = adapted_tiny_model(tiny_checkpoint)
    trained = [name for name, param in model.named_parameters() if param.requires_grad]
    assert trained and all(".lora_A." in name or ".lora_B." in name for name in trained)

    losses = train_candidate(
        model,
        adapter_anchor_state(model, toward_base=True),
        corpus_examples(tokenizer),
        [],
        hyperparameters(lr=1e-2, anchor_strength=1.0, epochs=2, lora_rank=4),
        pad_id=padding_id(tokenizer),
    )

    assert losses[-1] < losses[0]
    assert delta_norm(model) > 0  # the adapter learned something
    after = dict(model.unload().named_parameters())  # the base model, without the adapter
    assert after.keys() == base_weights.keys()
    for name, weight in base_weights.items():
        assert torch.equal(after[name], weight), name


def test_omega_pulls_the_adapters_delta_to_the_base(tiny_checkpoint):
    model, tokenizer = adapted_tiny_model(tiny_checkpoint)
    give_the_adapter_a_delta(model)
    anchor = adapter_anchor_state(model, toward_base=True)
    named = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    a_before = {name: param.detach().clone() for name, param in named if ".lora_A." in name}
    alpha, strength = 0.1, 2.0
    optimizer = AnchoredAdam(
        [param for _, param in named],
        [anchor[name] for name, _ in named],
        lr=alpha,
        anchor_strength=strength,
    )
    norms = [delta_norm(model)]
    for _ in range(5):
        for _, param in named:
            param.grad = torch.zeros_like(param)  # no task loss: only the pull moves θ
        optimizer.step()
        norms.append(delta_norm(model))

    # B ← (1 − αλ)·B each step and ΔW = s·B·A is linear in B; A stays where it started.
    assert norms[0] > 0
    for before, after in itertools.pairwise(norms):
        assert after == pytest.approx(before * (1 - alpha * strength), rel=1e-4)
    for name, param in named:
        if name in a_before:
            assert torch.equal(param, a_before[name])

    # With a huge λ one step lands on θ₀: no delta, the base's own outputs.
    huge = AnchoredAdam(
        [param for _, param in named],
        [anchor[name] for name, _ in named],
        lr=0.1,
        anchor_strength=1e9,
    )
    for _, param in named:
        param.grad = torch.zeros_like(param)
    huge.step()
    assert delta_norm(model) == 0
    base, _ = load_checkpoint(tiny_checkpoint)
    ids = torch.tensor([encode_pairs(tokenizer, [("hello", "hi")], max_tokens=64)[0][0]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, base(input_ids=ids).logits)


def test_an_adapter_checkpoint_holds_the_adapter_and_loads_onto_its_base(tiny_checkpoint, tmp_path):
    model, tokenizer = adapted_tiny_model(tiny_checkpoint)
    give_the_adapter_a_delta(model)
    path = write_checkpoint(
        model, tokenizer, tmp_path / "adapter", {BASE_CHECKPOINT_KEY: str(tiny_checkpoint)}
    )

    files = {p.name for p in path.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= files
    assert "model.safetensors" not in files  # the adapter alone, not a copy of the base
    # Continued by a run: the adapter apart, the same weights, only they trainable.
    trainable, _ = load_checkpoint(path, trainable_adapter=True)
    saved = {n: p for n, p in trainable.named_parameters() if p.requires_grad}
    ours = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert saved.keys() == ours.keys()
    for name, param in ours.items():
        assert torch.equal(saved[name], param), name

    # Served: merged into its base, a plain model that answers as the adapted one does.
    served, served_tokenizer = load_checkpoint(path)
    assert type(served).__name__ == "LlamaForCausalLM"
    merged = model.merge_and_unload()
    replies = greedy_replies(merged, tokenizer, questions(), max_new_tokens=24)
    assert greedy_replies(served, served_tokenizer, questions(), max_new_tokens=24) == replies
    base, _ = load_checkpoint(tiny_checkpoint)
    assert greedy_replies(base, tokenizer, questions(), max_new_tokens=24) != replies


def test_an_adapter_checkpoint_without_its_base_is_refused(tiny_checkpoint, tmp_path):
    model, tokenizer = adapted_tiny_model(tiny_checkpoint)
    nameless = write_checkpoint(model, tokenizer, tmp_path / "nameless", {})
    gone = write_checkpoint(
        model, tokenizer, tmp_path / "gone", {BASE_CHECKPOINT_KEY: str(tmp_path / "deleted")}
    )

    with pytest.raises(CheckpointError, match="does not name its base checkpoint"):
        load_checkpoint(nameless)
    with pytest.raises(CheckpointError, match="Cannot load checkpoint"):
        load_checkpoint(gone)


# --- A whole run with LoRA ---------------------------------------------------------------


@pytest.fixture
def lora_settings(settings, tmp_path):
    pin_promotable_hyperparameters(settings)
    for name, value in LORA.items():
        setattr(settings, name, value)
    settings.CHECKPOINT_DIR = tmp_path / "checkpoints"
    return settings


def execute_run(**overrides) -> TrainingRun:
    run, _ = runs.request_training_run(
        trigger=TrainingRun.Trigger.COMMAND, overrides=overrides, enqueue=False
    )
    return runs.execute_training_run(run.pk)


def reply_by(engine: GenerationEngine, version: ModelVersion, question: str):
    async def ask():
        active = ActiveVersion(version.pk, version.name, version.checkpoint_path)
        stream = engine.stream_reply(active, [{"role": "user", "content": question}])
        async for _ in stream:
            pass
        return stream.result

    return asyncio.run(ask())


@pytest.mark.django_db
def test_a_lora_run_registers_an_adapter_version_on_its_base_that_the_engine_serves(
    active_model_version, lora_settings
):
    engine = GenerationEngine(GenerationOptions(max_new_tokens=24))
    question = questions()[0]
    assert reply_by(engine, active_model_version, question).model_version_id == (
        active_model_version.pk
    )
    rate_consistently(rounds=2)

    run = execute_run()

    assert run.status == TrainingRun.Status.SUCCEEDED, (run.gate_reasons, run.error)
    assert run.hyperparameters["lora_rank"] == 4
    assert (run.parent, run.anchor) == (active_model_version, active_model_version)
    assert run.metrics_after["precision"] == "fp32"
    version = run.result_version
    assert version.status == ModelVersion.Status.ACTIVE
    assert version.adapter_base == active_model_version
    metadata = json.loads(
        (lora_settings.CHECKPOINT_DIR / version.name / "metadata.json").read_text()
    )
    assert metadata["adapter_base"] == active_model_version.name
    assert metadata[BASE_CHECKPOINT_KEY] == active_model_version.checkpoint_path
    assert not (lora_settings.CHECKPOINT_DIR / version.name / "model.safetensors").exists()

    # The engine swaps to the adapter version (merged into its base) and answers with it.
    result = reply_by(engine, version, question)
    assert result.model_version_id == version.pk and result.finish_reason != "error"
    assert result.text and engine.loaded_version.id == version.pk

    # The next run continues that adapter, on the same base, anchored on the base.
    rate_consistently(rounds=1, owner_prefix="second")
    second = execute_run(max_steps=4)
    assert second.parent == version and second.anchor == active_model_version
    # Measured before training, the run's model is the first adapter, not the bare base.
    first_before, first_after = (
        run.metrics_before["retention_perplexity"],
        run.metrics_after["retention_perplexity"],
    )
    assert first_after != pytest.approx(first_before)
    assert second.metrics_before["retention_perplexity"] == pytest.approx(first_after)
    assert second.result_version.adapter_base == active_model_version


@pytest.mark.django_db
def test_an_ewc_lora_run_weighs_the_adapter_by_its_own_fisher(active_model_version, lora_settings):
    lora_settings.LEARNING_REGULARIZER = "ewc"
    rate_consistently(rounds=1)

    run = execute_run(max_steps=2)

    assert run.error == "" and run.result_version.adapter_base == active_model_version
    [cached] = (lora_settings.CHECKPOINT_DIR / "fisher").iterdir()
    assert cached.name.startswith(f"{active_model_version.name}.adapter-")
    fisher = load_file(cached)
    assert fisher and all(".lora_A." in name or ".lora_B." in name for name in fisher)
    # At θ₀ (B = 0) A changes nothing, so its weight is 0: the pull is on B, the delta.
    assert not any(w.any() for name, w in fisher.items() if ".lora_A." in name)
    assert all(w.any() for name, w in fisher.items() if ".lora_B." in name)


# --- bf16 autocast ----------------------------------------------------------------------


def test_auto_autocasts_on_cuda_and_on_cpus_with_bf16_instructions(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, "avx512_f": True})
    assert precision.autocast_dtype("auto", "cpu") is None
    assert precision.autocast_dtype("auto", "cuda") is torch.bfloat16
    assert precision.autocast_dtype("bf16", "cpu") is torch.bfloat16
    assert precision.autocast_dtype("off", "cuda") is None
    for flag in ("amx_bf16", "avx512_bf16"):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda flag=flag: {flag: True})
        assert precision.autocast_dtype("auto", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="autocast must be one of auto, bf16, off"):
        precision.autocast_dtype("fp16", "cpu")


def test_runs_read_lora_and_autocast_from_the_settings(settings):
    settings.LEARNING_AUTOCAST = "bf16"
    settings.LEARNING_LORA_RANK = 8
    settings.LEARNING_LORA_TARGETS = "q_proj,v_proj"

    hp = Hyperparameters.from_settings()

    assert (hp.autocast, hp.lora_rank, hp.lora_targets) == ("bf16", 8, "q_proj,v_proj")
    with pytest.raises(ValueError, match="autocast must be one of"):
        Hyperparameters.from_settings({"autocast": "fp16"})
    with pytest.raises(ValueError, match="lora_dropout in"):
        Hyperparameters.from_settings({"lora_dropout": 1.0})


@pytest.mark.parametrize(("mode", "dtype"), [("bf16", torch.bfloat16), ("off", torch.float32)])
def test_training_runs_the_forward_pass_in_bf16_when_asked(tiny_checkpoint, mode, dtype):
    model, tokenizer = load_checkpoint(tiny_checkpoint)
    seen: set[torch.dtype] = set()
    layer = model.model.layers[0].self_attn.q_proj
    layer.register_forward_hook(lambda module, args, output: seen.add(output.dtype))

    train_candidate(
        model,
        {name: param.detach().clone() for name, param in model.named_parameters()},
        corpus_examples(tokenizer),
        [],
        hyperparameters(max_steps=2, autocast=mode),
        pad_id=padding_id(tokenizer),
    )

    assert seen == {dtype}
    assert {param.dtype for param in model.parameters()} == {torch.float32}
