"""Whether a message asks for a person: whole words of a fixed list, in any case."""

from __future__ import annotations

import pytest

from knowledge.person_request import PHRASES, asks_for_a_person


@pytest.mark.parametrize(
    "text",
    [
        "Can I talk to a human?",
        "CAN I TALK TO A HUMAN",
        "i want to speak to   someone",
        "Let me chat with an agent, please.",
        "talk to person",
        "Is there a real person there?",
        "I'd like to speak with your team",
        "customer service!!",
        "Please call me back.",
        "transfer me to a manager",
    ],
)
def test_it_hears_a_request_for_a_person(text):
    assert asks_for_a_person(text)


@pytest.mark.parametrize(
    "text",
    [
        "How much is shipping?",
        "Where is my parcel?",
        "Are you human?",  # a question about the bot, not a request for a person
        "I talked to a humanitarian group",  # "human" only as part of a word
        "personalised gift wrapping",
        "recall messages",
        "",
    ],
)
def test_it_leaves_other_messages_alone(text):
    assert not asks_for_a_person(text)


def test_every_phrase_matches_itself_and_is_listed_once():
    assert len(set(PHRASES)) == len(PHRASES)
    assert all(asks_for_a_person(phrase.upper()) for phrase in PHRASES)
