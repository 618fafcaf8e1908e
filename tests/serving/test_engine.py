"""The generation engine: streaming, determinism, version switches, a free event loop, errors."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from knowledge.demo.corpus import load_corpus
from knowledge.prompt import grounded_turns
from learning.models import ModelVersion
from learning.versions import activate_version
from serving import backends, chat_template
from serving import engine as engine_module
from serving.engine import GenerationEngine, GenerationOptions
from serving.generation import ActiveVersion

pytestmark = pytest.mark.django_db(transaction=True)


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


async def collect(stream) -> list[str]:
    return [delta async for delta in stream]


async def test_it_streams_deltas_that_add_up_to_the_reply(active_model_version):
    intent = load_corpus().intents[0]
    version = await backends.get_active_version()
    assert version == ActiveVersion(
        active_model_version.pk, active_model_version.name, active_model_version.checkpoint_path
    )

    stream = backends.get_engine().stream_reply(version, ask(intent.questions[0]))
    deltas = await collect(stream)

    assert len(deltas) > 1 and all(deltas)
    result = stream.result
    assert "".join(deltas) == result.text
    # The tiny model has learned its few training answers by heart.
    assert result.text == intent.answer
    assert result.model_version_id == active_model_version.pk
    assert result.finish_reason == "stop"
    assert result.token_count > len(deltas) - 1
    assert 0 < result.time_to_first_token_ms <= result.generation_ms


async def test_it_gives_the_same_reply_to_the_same_prompt(active_model_version):
    version = await backends.get_active_version()
    turns = ask("hello, can you help me with an order i placed")
    engine = backends.get_engine()

    first, second = engine.stream_reply(version, turns), engine.stream_reply(version, turns)
    # Both run in one batch; deltas may be chunked differently (a reader that falls behind
    # gets them joined), the text may not.
    assert "".join(await collect(first)) == "".join(await collect(second))
    assert first.result.text == second.result.text
    assert first.result.token_count == second.result.token_count


async def test_it_answers_with_a_newly_activated_version(
    active_model_version, second_model_version
):
    engine = backends.get_engine()
    turns = ask(load_corpus().intents[1].questions[0])
    before = engine.stream_reply(await backends.get_active_version(), turns)
    await collect(before)

    await database_sync_to_async(activate_version)(second_model_version, note="switch")
    after = engine.stream_reply(await backends.get_active_version(), turns)
    await collect(after)

    assert before.result.model_version_id == active_model_version.pk
    assert after.result.model_version_id == second_model_version.pk
    assert engine.loaded_version.id == second_model_version.pk


async def test_it_notices_a_version_activated_elsewhere_after_the_poll_interval(
    active_model_version, second_model_version, settings
):
    settings.GENERATION_POLL_SECONDS = 0.3
    assert (await backends.get_active_version()).id == active_model_version.pk

    def switch_like_another_process() -> None:
        ModelVersion.objects.filter(pk=active_model_version.pk).update(status="retired")
        ModelVersion.objects.filter(pk=second_model_version.pk).update(status="active")

    await database_sync_to_async(switch_like_another_process)()
    assert (await backends.get_active_version()).id == active_model_version.pk
    await asyncio.sleep(0.35)
    version = await backends.get_active_version()
    assert version.id == second_model_version.pk

    stream = backends.get_engine().stream_reply(version, ask("hi"))
    await collect(stream)
    assert stream.result.model_version_id == second_model_version.pk


async def test_it_keeps_the_event_loop_responsive_while_generating(tiny_checkpoint):
    # A fresh engine: loading the checkpoint is part of the work the loop must not wait on.
    engine = GenerationEngine(GenerationOptions(max_new_tokens=96))
    version = ActiveVersion(1, "tiny", str(tiny_checkpoint))
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    # Enough work that a loop blocked by generation would show one long gap, whatever the
    # machine's speed: a dozen paraphrases of each of the first three intents.
    questions = [q for intent in load_corpus().intents[:3] for q in intent.questions[:12]]
    streams = [engine.stream_reply(version, ask(q)) for q in questions]
    for stream in streams:
        await collect(stream)
    busy = time.perf_counter() - started
    done.set()
    await ticker

    # Relative bounds only: a blocked loop gives one gap close to `busy` and few ticks.
    assert len(gaps) > busy / 0.02
    assert max(gaps) < busy / 4


async def test_it_reports_a_checkpoint_that_cannot_be_loaded_in_the_result(
    tmp_path, tiny_checkpoint
):
    engine = GenerationEngine()
    missing = ActiveVersion(7, "gone", str(tmp_path / "no-such-checkpoint"))

    stream = engine.stream_reply(missing, ask("hi"))
    assert await collect(stream) == []  # the stream ends normally: the result says it failed
    assert stream.result.finish_reason == "error"
    assert "no-such-checkpoint" in stream.result.error
    assert stream.result.text == ""

    good = engine.stream_reply(ActiveVersion(8, "tiny", str(tiny_checkpoint)), ask("hi"))
    await collect(good)
    assert good.result.finish_reason in ("stop", "length")


async def test_it_fails_the_requests_of_a_version_whose_load_raises_anything(
    monkeypatch, tiny_checkpoint
):
    """Not only a CheckpointError: whatever loading raises ends those replies, not the engine."""
    real_load = engine_module.load_checkpoint

    def load(path, device="cpu"):
        if "broken" in str(path):
            raise RuntimeError("size mismatch for model.embed_tokens.weight")
        return real_load(path, device=device)

    monkeypatch.setattr(engine_module, "load_checkpoint", load)
    engine = GenerationEngine()
    broken = engine.stream_reply(ActiveVersion(7, "broken", "broken"), ask("hi"))

    assert await asyncio.wait_for(collect(broken), timeout=30) == []
    assert broken.result.finish_reason == "error"
    assert "size mismatch" in broken.result.error

    good = engine.stream_reply(ActiveVersion(8, "tiny", str(tiny_checkpoint)), ask("hi"))
    await asyncio.wait_for(collect(good), timeout=30)
    assert good.result.finish_reason in ("stop", "length")


async def test_it_cuts_a_long_conversation_from_the_left(monkeypatch, tiny_checkpoint):
    prompt_lengths = []
    real_prompt_ids = chat_template.prompt_ids

    def prompt_ids(tokenizer, turns, *, budget=None):
        ids = real_prompt_ids(tokenizer, turns, budget=budget)
        prompt_lengths.append((len(real_prompt_ids(tokenizer, turns)), len(ids)))
        return ids

    monkeypatch.setattr(chat_template, "prompt_ids", prompt_ids)
    engine = GenerationEngine(GenerationOptions(max_new_tokens=16, max_context_tokens=48))
    turns = []
    for intent in load_corpus().intents[:4]:
        turns += [
            {"role": "user", "content": intent.questions[0]},
            {"role": "assistant", "content": intent.answer},
        ]
    turns.append({"role": "user", "content": "and one more thing"})

    stream = engine.stream_reply(ActiveVersion(1, "tiny", str(tiny_checkpoint)), turns)
    deltas = await collect(stream)

    assert stream.result.finish_reason in ("stop", "length")
    assert stream.result.token_count <= 16
    assert "".join(deltas) == stream.result.text
    # The whole conversation is far longer than the context: the prompt was cut to leave room.
    ((whole, used),) = prompt_lengths
    assert whole > 48
    assert used == 48 - 16


async def test_it_prompts_with_a_grounded_conversation_system_turn_first(
    monkeypatch, tiny_checkpoint
):
    seen = []
    real_prompt_ids = chat_template.prompt_ids

    def prompt_ids(tokenizer, turns, *, budget=None):
        seen.append(turns)
        return real_prompt_ids(tokenizer, turns, budget=budget)

    monkeypatch.setattr(chat_template, "prompt_ids", prompt_ids)
    article = {"id": 1, "title": "Delivery time", "text": "2 to 4 days.", "score": 0.8}
    turns = grounded_turns(ask("how long does delivery take"), [article])

    stream = GenerationEngine().stream_reply(ActiveVersion(1, "tiny", str(tiny_checkpoint)), turns)
    await collect(stream)

    assert stream.result.finish_reason in ("stop", "length")
    assert seen == [turns]
