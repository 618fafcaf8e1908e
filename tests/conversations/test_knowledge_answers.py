"""Knowledge-base answers end to end: the chat over /ws/chat/, the articles saved as staff save
them, the real retrieval (the tests' tiny encoder) and the real engine (the tiny model).

With the tiny encoder (tests/knowledge_fixtures.py) the cosine of two texts is the share of word
pieces they have in common, so which article matches, and how well, is known in advance.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from conversations.models import Message
from knowledge.services import do_save_article
from tests.conversations.chat_sockets import (
    chat_turn,
    new_session_cookie,
    open_chat,
)
from tests.knowledge.articles import ARTICLES, add_all_articles

pytestmark = pytest.mark.usefixtures("chat_test")

CONTACT = "help@shop.example or +49 40 1234"
TRACK_QUESTIONS = "where is my parcel\nhow do i track my order"
# Found through one of the article's example questions.
IN_SCOPE = "where is my parcel right now?"
# No word piece in common with any article: the tiny encoder scores it 0 against all of them.
OFF_TOPIC = "fleece jacket"
# The decline threshold for the tiny encoder, whose cosine is the share of word pieces in
# common: OFF_TOPIC scores 0, IN_SCOPE 0.67 against its article's example question, and a
# question that shares only little words ("a", "my", "i") with an article 0.05-0.2. 0.25
# declines the first and the last and answers the second; MiniLM's calibrated default (0.575)
# is a cosine of other vectors and means nothing here.
TINY_ENCODER_MIN_SCORE = 0.25


@pytest.fixture(autouse=True)
def knowledge_settings(settings):
    settings.KNOWLEDGE_MIN_SCORE = TINY_ENCODER_MIN_SCORE
    settings.BUSINESS_CONTACT = CONTACT


@pytest.fixture
def articles(tiny_encoder):
    """The shop's articles, saved and embedded through the service; one has example questions."""
    saved = add_all_articles()
    saved["Track order"].example_questions = TRACK_QUESTIONS
    do_save_article(saved["Track order"])
    return saved


def cosine(encoder, first: str, second: str) -> float:
    vectors = encoder.encode([first, second])
    return float(vectors[0] @ vectors[1])


@database_sync_to_async
def reply_of(turn) -> Message:
    return Message.objects.get(pk=turn["end"]["id"])


async def test_a_question_that_matches_an_article_gets_a_reply_grounded_in_it(
    articles, tiny_encoder, active_model_version, settings
):
    track = articles["Track order"]
    socket, _ = await open_chat(await new_session_cookie())

    turn = await chat_turn(socket, IN_SCOPE)

    assert turn["end"]["model_version"] == active_model_version.name
    reply = await reply_of(turn)
    assert not reply.declined
    assert reply.model_version_id == active_model_version.pk
    assert reply.finish_reason in ("stop", "length")
    best = reply.grounding[0]
    assert (best["id"], best["title"], best["text"]) == (track.pk, "Track order", track.text)
    # The article scores by its nearest vector: the example question "where is my parcel"; its
    # title and text alone would have been declined.
    by_question = cosine(tiny_encoder, "where is my parcel", IN_SCOPE)
    by_text = cosine(tiny_encoder, f"Track order\n\n{track.text}", IN_SCOPE)
    assert best["score"] == pytest.approx(by_question, abs=1e-5)
    assert by_text < TINY_ENCODER_MIN_SCORE <= by_question
    assert len(reply.grounding) == settings.KNOWLEDGE_TOP_K == 1
    await socket.disconnect()


async def test_a_question_no_article_matches_is_declined_with_the_contact(
    articles, active_model_version
):
    socket, _ = await open_chat(await new_session_cookie())

    turn = await chat_turn(socket, OFF_TOPIC)

    text = turn["end"]["text"]
    # It names what the knowledge base knows: its topics, not the unrelated articles retrieved.
    topics = sorted({topic for topic, _ in ARTICLES.values()})
    listed = f"{', '.join(topics[:-1])} and {topics[-1]}"
    assert text.startswith(
        f"Sorry, I can't help with that: I can only answer questions about {listed}"
    )
    assert CONTACT in text
    assert turn["end"]["model_version"] is None  # no model ran
    reply = await reply_of(turn)
    assert (reply.text, reply.declined, reply.model_version_id) == (text, True, None)
    assert all(abs(article["score"]) < 0.01 for article in reply.grounding)
    assert {article["title"] for article in reply.grounding} <= set(ARTICLES)
    await socket.disconnect()


async def test_asking_for_a_person_is_declined_with_the_contact_when_handoff_is_off(
    articles, active_model_version, settings
):
    settings.HANDOFF_ENABLED = False
    socket, _ = await open_chat(await new_session_cookie())

    turn = await chat_turn(socket, "can i talk to a human")

    text = turn["end"]["text"]
    assert text.startswith("Of course: a person from our team can take over. ")
    assert CONTACT in text
    assert turn["end"]["model_version"] is None
    reply = await reply_of(turn)
    assert (reply.text, reply.declined) == (text, True)
    assert len(reply.grounding) == settings.KNOWLEDGE_TOP_K
    await socket.disconnect()
