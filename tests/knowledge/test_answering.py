"""`answering.decide_reply`: answer from the articles, decline, or answer as before; the decline's
text. The chat over a socket is in test_grounded_replies.py."""

from __future__ import annotations

import pytest

from knowledge import answering
from knowledge.prompt import grounded_turns
from knowledge.retrieval import NOTHING, Retrieval, RetrievedArticle

CONTACT = "help@shop.example or +49 40 1234"

pytestmark = pytest.mark.django_db  # the business profile is a row
QUESTION = [{"role": "user", "content": "how much is shipping?"}]


@pytest.fixture(autouse=True)
def knowledge_settings(settings):
    settings.KNOWLEDGE_MIN_SCORE = 0.45
    settings.BUSINESS_CONTACT = CONTACT
    settings.HANDOFF_ENABLED = False  # the declines' own texts; with a handoff: below


def shipping(score: float) -> Retrieval:
    article = RetrievedArticle(7, "Shipping cost", "Standard shipping costs 4.90 EUR.", score)
    return Retrieval(articles=(article,), best_score=score, enabled=True)


def test_it_answers_from_the_articles_from_the_threshold_up():
    plan = answering.decide_reply("how much is shipping?", shipping(0.45), QUESTION)

    grounding = [
        {
            "id": 7,
            "title": "Shipping cost",
            "text": "Standard shipping costs 4.90 EUR.",
            "score": 0.45,
        }
    ]
    assert plan == answering.ReplyPlan(
        turns=grounded_turns(QUESTION, grounding), grounding=grounding
    )
    assert not plan.declined


def test_it_declines_below_the_threshold_and_keeps_what_it_was_shown():
    plan = answering.decide_reply("how much is shipping?", shipping(0.449), QUESTION)

    assert plan.declined
    assert plan.turns == QUESTION
    assert [article["score"] for article in plan.grounding] == [0.449]
    assert plan.decline_text.startswith("Sorry, I can't help with that")


@pytest.mark.parametrize(
    "question", ["Can I speak with someone?", "I want a REAL person!", "please call me"]
)
def test_it_declines_a_request_for_a_person_however_well_the_articles_match(question):
    plan = answering.decide_reply(question, shipping(0.99), QUESTION)

    assert plan.declined
    assert plan.decline_text.startswith("Of course: a person from our team can take over.")


def test_it_keeps_the_conversation_as_it_is_when_retrieval_is_disabled():
    plan = answering.decide_reply("talk to a person", NOTHING, QUESTION)

    assert plan == answering.ReplyPlan(turns=QUESTION, grounding=[])
    assert not plan.declined


def test_the_decline_names_the_topics_it_is_given_else_what_the_articles_cover():
    given = answering.decide_reply("call me", shipping(0.9), QUESTION, topics=["orders", "returns"])
    untopical = answering.decide_reply("call me", shipping(0.9), QUESTION)

    assert "questions about orders and returns." in given.decline_text
    # Without topics, not the retrieved articles' titles (often questions themselves).
    assert "questions about what our help articles cover." in untopical.decline_text


def test_the_decline_lists_each_topic_once_and_offers_the_team():
    text = answering.decline_text(
        person_asked=False, topics=["Shipping", "", "Returns", "Shipping"]
    )

    assert text == (
        "Sorry, I can't help with that: I can only answer questions about Shipping and Returns. "
        f"If you'd like to talk to a person, our team can take over: {CONTACT}."
    )
    assert "questions about what our help articles cover." in answering.decline_text(
        person_asked=True, topics=[]
    )


def test_the_decline_says_what_the_profile_says_the_bot_helps_with():
    from knowledge.models import BusinessProfile

    BusinessProfile.objects.create(pk=1, helps_with="cards and transfers", contact="0800 123")
    text = answering.decline_text(person_asked=False, topics=["Shipping", "Returns"])

    assert text == (
        "Sorry, I can't help with that: I can only answer questions about cards and transfers. "
        "If you'd like to talk to a person, our team can take over: 0800 123."
    )


def test_with_handoff_on_a_request_for_a_person_says_a_person_will_answer_here(settings):
    settings.HANDOFF_ENABLED = True

    plan = answering.decide_reply("Can I speak with someone?", shipping(0.99), QUESTION)

    assert plan.person_asked and plan.declined
    assert plan.decline_text == answering.DECLINE_HANDING_OFF
    assert answering.is_decline(plan.decline_text)
