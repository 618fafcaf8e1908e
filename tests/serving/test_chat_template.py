"""The chat format: prompt ids, grounded prompts, padding, stop ids, the facts check and batched
greedy decoding."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from knowledge.demo.corpus import load_corpus
from knowledge.prompt import grounded_turns
from serving.chat_template import (
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
    without_oldest_turn,
)
from serving.checkpoints import load_checkpoint

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


ARTICLES = [
    {"id": 3, "title": "Delivery time", "text": "Delivery takes 2 to 4 days.", "score": 0.7},
    {"id": 5, "title": "Express", "text": "Express costs 12.90 EUR.", "score": 0.6},
]


@pytest.mark.django_db  # the prompt names the business profile's business
def test_it_puts_the_articles_in_a_system_turn_before_the_conversation():
    turns = grounded_turns(CONVERSATION, ARTICLES, history=len(CONVERSATION))

    system, *rest = turns
    assert rest == CONVERSATION and rest[0] is not CONVERSATION[0]  # copies, in order
    assert system["role"] == "system"
    assert system["content"].startswith(
        "You are the customer-service assistant of our company."  # no profile, no setting
    )
    assert system["content"].endswith(
        "\n\n1. Delivery time\nDelivery takes 2 to 4 days.\n\n2. Express\nExpress costs 12.90 EUR."
    )
    assert grounded_turns(CONVERSATION, []) == CONVERSATION


@pytest.mark.django_db  # the prompt names the business profile's business
def test_a_grounded_prompt_keeps_the_last_message_and_the_history_asked_for(settings):
    settings.CHAT_HISTORY_TURNS = 0

    system, *rest = grounded_turns(CONVERSATION, ARTICLES)

    assert system["role"] == "system"
    assert rest == CONVERSATION[-1:]  # the articles were retrieved for it alone
    assert grounded_turns(CONVERSATION, ARTICLES, history=1)[1:] == CONVERSATION[-2:]
    settings.CHAT_HISTORY_TURNS = 1
    assert grounded_turns(CONVERSATION, ARTICLES)[1:] == CONVERSATION[-2:]


@pytest.mark.django_db  # the prompt names the business profile's business
def test_a_template_without_system_turns_prompts_as_if_ungrounded(tiny):
    _, tokenizer = tiny  # the starter's template renders user and assistant turns only

    grounded = grounded_turns(CONVERSATION, ARTICLES, history=len(CONVERSATION))
    assert prompt_ids(tokenizer, grounded) == prompt_ids(tokenizer, CONVERSATION)


def test_it_drops_the_oldest_turn_after_a_leading_system_turn():
    system = {"role": "system", "content": "articles"}

    assert without_oldest_turn([system, *CONVERSATION]) == [system, *CONVERSATION[1:]]
    assert without_oldest_turn(CONVERSATION) == CONVERSATION[1:]
    assert without_oldest_turn([system, CONVERSATION[-1]]) is None
    assert without_oldest_turn(CONVERSATION[-1:]) is None


@pytest.mark.django_db  # the prompt names the business profile's business
def test_a_grounded_prompt_loses_whole_old_turns_and_keeps_its_articles(system_turn_tokenizer):
    tokenizer = system_turn_tokenizer
    system, *_ = grounded_turns(CONVERSATION, ARTICLES, history=len(CONVERSATION))
    turns = [system, *CONVERSATION, {"role": "assistant", "content": "Two to four days."}]
    turns.append({"role": "user", "content": "And express?"})
    newest = [system, *turns[3:]]  # the first question and its answer gone
    budget = len(prompt_ids(tokenizer, newest))
    assert len(prompt_ids(tokenizer, turns)) > budget

    assert prompt_ids(tokenizer, turns, budget=budget) == prompt_ids(tokenizer, newest)
    # Past the system turn and the last question, what is left is cut from the left.
    last = prompt_ids(tokenizer, [system, turns[-1]])
    short = len(last) - 5
    assert prompt_ids(tokenizer, turns, budget=short) == cut_prompt(
        last, short, tokenizer.bos_token_id
    )


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
    code = "import sys, serving.chat_template; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
