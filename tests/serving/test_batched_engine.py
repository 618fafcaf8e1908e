"""The batching engine: concurrent replies equal each prompt alone; joining, leaving, swaps."""

from __future__ import annotations

import asyncio
import time

import pytest

from knowledge.demo.corpus import load_corpus
from serving.chat_template import greedy_replies
from serving.checkpoints import load_checkpoint
from serving.engine import GenerationEngine, GenerationOptions, IncrementalText
from serving.generation import ActiveVersion, EngineBusy

MAX_NEW_TOKENS = 48


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def questions() -> list[str]:
    """Prompts of different lengths (so the batch is padded), known and unknown to the model."""
    intents = load_corpus().intents[:4]
    return [q for intent in intents for q in intent.questions[:2]] + ["hi", "ok thanks, bye!!"]


def greedy_alone(checkpoint) -> dict[str, str]:
    """What `generate` gives for each prompt on its own (no batch, no padding), greedy."""
    model, tokenizer = load_checkpoint(checkpoint)
    replies = greedy_replies(
        model, tokenizer, questions(), max_new_tokens=MAX_NEW_TOKENS, batch_size=1
    )
    return dict(zip(questions(), replies, strict=True))


@pytest.fixture(scope="module")
def references(tiny_checkpoint, second_tiny_checkpoint) -> dict[tuple[str, str], str]:
    return {
        (str(checkpoint), question): reply
        for checkpoint in (tiny_checkpoint, second_tiny_checkpoint)
        for question, reply in greedy_alone(checkpoint).items()
    }


def engine_with(**options) -> GenerationEngine:
    return GenerationEngine(GenerationOptions(max_new_tokens=MAX_NEW_TOKENS, **options))


async def read_all(stream) -> tuple[list[str], list[float]]:
    """The deltas of a stream and when each arrived."""
    deltas, times = [], []
    async for delta in stream:
        deltas.append(delta)
        times.append(time.perf_counter())
    return deltas, times


async def first_delta(stream) -> str:
    return await stream.__anext__()


async def test_it_batches_concurrent_replies_each_equal_to_its_prompt_alone(
    tiny_checkpoint, references
):
    engine = engine_with(max_batch=32, batch_wait_ms=20)
    version = ActiveVersion(1, "tiny", str(tiny_checkpoint))

    streams = [engine.stream_reply(version, ask(q)) for q in questions()]
    outputs = await asyncio.gather(*(read_all(stream) for stream in streams))

    assert engine.peak_batch == len(streams)  # one batch, not one after another
    for question, stream, (deltas, _) in zip(questions(), streams, outputs, strict=True):
        expected = references[(str(tiny_checkpoint), question)]
        assert stream.result.text == "".join(deltas) == expected, question
        assert all(deltas) and "\ufffd" not in stream.result.text
        assert stream.result.model_version_id == 1
    assert {s.result.finish_reason for s in streams} <= {"stop", "length"}
    assert engine.accepted == 0


async def test_it_lets_a_new_request_join_a_running_batch(tiny_checkpoint, references, slow_steps):
    engine = engine_with()
    version = ActiveVersion(1, "tiny", str(tiny_checkpoint))
    first_question, second_question = questions()[0], questions()[2]
    first = engine.stream_reply(version, ask(first_question))
    head = await first_delta(first)
    steps_before_joining = engine.steps

    second = engine.stream_reply(version, ask(second_question))
    (first_rest, first_times), (second_deltas, second_times) = await asyncio.gather(
        read_all(first), read_all(second)
    )

    assert head + "".join(first_rest) == references[(str(tiny_checkpoint), first_question)]
    assert "".join(second_deltas) == references[(str(tiny_checkpoint), second_question)]
    assert engine.peak_batch == 2
    # The newcomer streamed while the first reply was still being decoded, and the two
    # shared steps: fewer steps in all than the two replies' tokens one after the other.
    assert second_times[0] < first_times[-1]
    tokens = first.result.token_count + second.result.token_count
    assert engine.steps < tokens - 2
    assert engine.steps > steps_before_joining


async def test_it_stops_decoding_a_cancelled_reply_at_the_next_step(
    tiny_checkpoint, references, slow_steps
):
    engine = engine_with()
    version = ActiveVersion(1, "tiny", str(tiny_checkpoint))
    leaving = engine.stream_reply(version, ask(questions()[0]))
    staying = engine.stream_reply(version, ask(questions()[4]))
    seen = await first_delta(leaving)

    leaving.cancel()
    rest, _ = await read_all(leaving)
    staying_deltas, _ = await read_all(staying)

    result = leaving.result
    assert result.finish_reason == "disconnected"
    # All it decoded is in its result, and that is a head of the whole reply, cut early.
    assert result.text == seen + "".join(rest)
    full = references[(str(tiny_checkpoint), questions()[0])]
    assert full.startswith(result.text) and len(result.text) < len(full)
    assert result.token_count <= 3
    assert "".join(staying_deltas) == references[(str(tiny_checkpoint), questions()[4])]
    assert engine.accepted == 0


async def test_it_ends_the_batch_with_its_partial_texts_when_a_forward_pass_fails(
    tiny_checkpoint, references, forward_pass_breaks_at_step_3
):
    engine = engine_with(batch_wait_ms=20)
    version = ActiveVersion(1, "tiny", str(tiny_checkpoint))
    broken = [engine.stream_reply(version, ask(q)) for q in questions()[:2]]
    outputs = await asyncio.gather(*(read_all(stream) for stream in broken))

    for question, stream, (deltas, _) in zip(questions()[:2], broken, outputs, strict=True):
        # The stream ended normally; the result says the reply failed, and keeps its text.
        result = stream.result
        assert (result.finish_reason, result.error) == ("error", "Generation failed: device lost")
        assert result.text and result.text == "".join(deltas)
        assert references[(str(tiny_checkpoint), question)].startswith(result.text)
        assert result.token_count == 3  # the prefill's token and two steps'
    after = engine.stream_reply(version, ask(questions()[2]))
    assert "".join((await read_all(after))[0]) == references[(str(tiny_checkpoint), questions()[2])]
    assert after.result.finish_reason in ("stop", "length")
    assert after.result.error is None
    assert engine.accepted == 0


async def test_it_refuses_a_request_past_the_queue_limit_and_drops_nothing(
    tiny_checkpoint, references
):
    engine = engine_with(max_queue=2)
    version = ActiveVersion(1, "tiny", str(tiny_checkpoint))
    accepted = [engine.stream_reply(version, ask(q)) for q in questions()[:2]]

    with pytest.raises(EngineBusy):
        engine.stream_reply(version, ask(questions()[2]))

    for question, stream in zip(questions()[:2], accepted, strict=True):
        deltas, _ = await read_all(stream)
        assert "".join(deltas) == references[(str(tiny_checkpoint), question)]
    later = engine.stream_reply(version, ask(questions()[2]))
    assert "".join((await read_all(later))[0]) == references[(str(tiny_checkpoint), questions()[2])]


async def test_it_swaps_versions_only_when_no_reply_runs_on_the_old_one(
    tiny_checkpoint, second_tiny_checkpoint, references, slow_steps
):
    engine = engine_with()
    old = ActiveVersion(1, "old", str(tiny_checkpoint))
    new = ActiveVersion(2, "new", str(second_tiny_checkpoint))
    question = questions()[0]
    running = engine.stream_reply(old, ask(question))
    await first_delta(running)

    on_new = engine.stream_reply(new, ask(question))
    late_on_old = engine.stream_reply(old, ask(questions()[1]))
    (_, running_times), (new_deltas, new_times), (late_deltas, late_times) = await asyncio.gather(
        read_all(running), read_all(on_new), read_all(late_on_old)
    )

    # The running reply finished on its version; the new version's reply started after it,
    # and a request queued behind the swap waited for its turn instead of jumping ahead.
    assert running.result.model_version_id == 1
    assert on_new.result.model_version_id == 2
    assert "".join(new_deltas) == references[(str(second_tiny_checkpoint), question)]
    assert new_times[0] > running_times[-1]
    assert late_times[0] > new_times[-1]
    assert "".join(late_deltas) == references[(str(tiny_checkpoint), questions()[1])]
    assert engine.peak_batch == 1


def test_it_streams_text_safely_across_token_boundaries(tiny_checkpoint):
    _, tokenizer = load_checkpoint(tiny_checkpoint)
    text = "Hi  there, ça coûte 12 € — ok?  🙂 done \n next"
    ids = tokenizer.encode(text, add_special_tokens=False)
    stream = IncrementalText(lambda part: tokenizer.decode(part, skip_special_tokens=True))

    deltas = [stream.push(token) for token in ids]
    deltas.append(stream.flush())

    assert "".join(deltas) == tokenizer.decode(ids, skip_special_tokens=True) == text
    assert not any("\ufffd" in delta for delta in deltas)
    assert len([d for d in deltas if d]) > 5
