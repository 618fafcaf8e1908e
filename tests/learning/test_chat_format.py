"""The chat format: prompt ids, padding, stop ids, the facts check and batched greedy decoding."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from learning.chat_format import (
    END_OF_TURN,
    chat_ids,
    cut_prompt,
    greedy_continuations,
    greedy_replies,
    padding_id,
    prompt_ids,
    states_facts,
    stop_ids,
    turn_ids,
)
from learning.checkpoints import load_checkpoint
from learning.starter.corpus import load_corpus

CONVERSATION = [
    {"role": "user", "content": "Hello there"},
    {"role": "assistant", "content": "Hi! How can I help?"},
    {"role": "user", "content": "How long does shipping take?"},
]


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


def questions() -> list[str]:
    """Questions of different lengths (so a batch is padded), known and unknown to the model."""
    intents = load_corpus().intents[:4]
    return [q for intent in intents for q in intent.questions[:2]] + ["hi", "ok thanks, bye!!"]


def test_it_pads_with_the_pad_token_else_end_of_sequence_else_zero():
    assert padding_id(SimpleNamespace(pad_token_id=5, eos_token_id=7)) == 5
    assert padding_id(SimpleNamespace(pad_token_id=0, eos_token_id=7)) == 0
    assert padding_id(SimpleNamespace(pad_token_id=None, eos_token_id=7)) == 7
    assert padding_id(SimpleNamespace(pad_token_id=None, eos_token_id=None)) == 0


def test_it_gives_the_ids_of_the_rendered_chat_template_as_plain_ints(tiny):
    _, tokenizer = tiny
    for add_generation_prompt in (True, False):
        text = tokenizer.apply_chat_template(
            CONVERSATION, add_generation_prompt=add_generation_prompt, tokenize=False
        )
        expected = tokenizer(text, add_special_tokens=False)["input_ids"]

        ids = chat_ids(tokenizer, CONVERSATION, add_generation_prompt=add_generation_prompt)

        assert ids == expected
        assert type(ids) is list and all(type(i) is int for i in ids)
    assert prompt_ids(tokenizer, CONVERSATION) == chat_ids(
        tokenizer, CONVERSATION, add_generation_prompt=True
    )


def test_it_reads_the_ids_out_of_a_mapping_from_apply_chat_template():
    tokenizer = SimpleNamespace(apply_chat_template=lambda *a, **k: {"input_ids": (3, 4, 5)})

    assert chat_ids(tokenizer, CONVERSATION, add_generation_prompt=True) == [3, 4, 5]


def test_it_keeps_the_newest_prompt_tokens_and_the_bos(tiny):
    assert cut_prompt([1, 10, 11, 12, 13], 3, bos_id=1) == [1, 12, 13]
    assert cut_prompt([10, 11, 12, 13], 3, bos_id=1) == [11, 12, 13]
    assert cut_prompt([1, 10, 11], 5, bos_id=1) == [1, 10, 11]
    assert cut_prompt([1, 10, 11], 0, bos_id=1) == [11]

    _, tokenizer = tiny
    full = prompt_ids(tokenizer, CONVERSATION)
    cut = prompt_ids(tokenizer, CONVERSATION, budget=6)
    assert cut == [tokenizer.bos_token_id, *full[-5:]]


def test_it_splits_a_conversation_into_prompt_and_the_assistant_turn(tiny):
    _, tokenizer = tiny
    reply = "It takes 3 to 5 business days."

    prompt, reply_ids = turn_ids(tokenizer, CONVERSATION, reply)

    assert prompt == prompt_ids(tokenizer, CONVERSATION)
    assert prompt + reply_ids == chat_ids(
        tokenizer,
        [*CONVERSATION, {"role": "assistant", "content": reply}],
        add_generation_prompt=False,
    )
    assert reply_ids[-1] == tokenizer.convert_tokens_to_ids(END_OF_TURN)
    assert tokenizer.decode(reply_ids, skip_special_tokens=True) == reply


def test_it_stops_on_end_of_sequence_end_of_turn_and_the_generation_config(tiny):
    model, tokenizer = tiny
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    assert stop_ids(model, tokenizer) == {tokenizer.eos_token_id, end}

    configured = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[7, 9]))
    assert stop_ids(configured, tokenizer) == {tokenizer.eos_token_id, end, 7, 9}
    one = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=8))
    assert stop_ids(one, tokenizer) == {tokenizer.eos_token_id, end, 8}

    without_end = SimpleNamespace(
        eos_token_id=2, unk_token_id=0, convert_tokens_to_ids=lambda token: 0
    )
    assert stop_ids(SimpleNamespace(), without_end) == {2}


def test_it_checks_that_a_reply_states_every_fact_whatever_the_case():
    reply = "Refunds take 5 Business Days; keep the Receipt."

    assert states_facts(reply, ["5 business days", "receipt"])
    assert not states_facts(reply, ["5 business days", "store credit"])
    assert states_facts(reply, [])


def test_it_decodes_a_batch_as_it_decodes_each_question_alone(tiny):
    model, tokenizer = tiny
    model.train()

    batched = greedy_replies(model, tokenizer, questions(), max_new_tokens=40, batch_size=32)
    alone = greedy_replies(model, tokenizer, questions(), max_new_tokens=40, batch_size=1)

    assert batched == alone
    assert any(batched) and model.training  # the mode it had is given back
    known = load_corpus().intents[0]
    assert states_facts(batched[0], known.facts)


def test_it_ends_a_reply_at_the_first_stop_id_like_the_engine(tiny):
    model, tokenizer = tiny
    prompt = prompt_ids(tokenizer, [{"role": "user", "content": questions()[0]}])
    full = model.generate(
        input_ids=torch.tensor([prompt]),
        max_new_tokens=96,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=padding_id(tokenizer),
    )[0, len(prompt) :].tolist()
    stops = stop_ids(model, tokenizer)
    first_stop = next(i for i, token in enumerate(full) if token in stops)
    assert first_stop < len(full) - 1  # it went on past the stop

    (reply,) = greedy_continuations(model, tokenizer, [prompt], max_new_tokens=96)

    assert reply == tokenizer.decode(full[:first_stop], skip_special_tokens=True)


def test_it_imports_without_torch():
    """Django imports the prompt functions at start-up (through the export): no model there."""
    code = "import sys, learning.chat_format; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
