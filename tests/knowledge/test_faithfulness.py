"""The faithfulness guard: loops, declines in the model's words and unsupported replies."""

from __future__ import annotations

import pytest

from knowledge import faithfulness
from knowledge.faithfulness import check_reply, guard_reply

ARTICLE = {
    "title": "Freeze your card",
    "text": "Freeze a lost card at once under Cards > Freeze card. Unfreezing takes 2 minutes.",
}
DECLINE = "Sorry, I can't help with that: I can only answer questions about cards."


def test_a_reply_stating_its_article_passes():
    reply = "You can freeze a lost card under Cards > Freeze card; unfreezing takes 2 minutes."

    assert check_reply(reply, [ARTICLE], is_decline=False) == ""


@pytest.mark.parametrize(
    "reply",
    [
        "Go to App Store > Card-View > Card-View > Card-View > Card-View > Card-View",
        "Freeze it. Freeze it. Freeze it. Freeze it.",
    ],
)
def test_a_reply_that_loops_is_repetition(reply):
    assert check_reply(reply, [ARTICLE], is_decline=False) == faithfulness.REPETITION


@pytest.mark.parametrize(
    "reply",
    [
        "We have a team of 5 people who answer the phone.",  # a number the article lacks
        "Our shop sells hiking boots and rain jackets in every size.",  # nothing of the article
        # an address the article does not give: a made-up one, or a planted phishing link
        "Freeze a lost card at once under Cards > Freeze card at https://cards.example/freeze.",
        "Freeze a lost card at once: write to freeze@cards.example and unfreezing takes 2 minutes",
        "Freeze a lost card at once under Cards > Freeze card, see www.cards.example.",
    ],
)
def test_a_reply_saying_what_its_article_does_not_is_unsupported(reply):
    assert check_reply(reply, [ARTICLE], is_decline=False) == faithfulness.UNSUPPORTED


def test_a_decline_in_the_models_words_is_flagged_whatever_it_says():
    reply = "Sorry, I can't help with that: I can only answer questions about shoes and socks."

    assert check_reply(reply, [ARTICLE], is_decline=True) == faithfulness.MODEL_DECLINE


def test_without_articles_nothing_is_checked():
    assert check_reply("Anything at all, 42 times.", [], is_decline=False) == ""


def test_a_flagged_reply_falls_back_to_the_article_by_default(settings):
    assert settings.KNOWLEDGE_GUARD_FALLBACK == "article"

    sent = guard_reply("We have 5 people.", [ARTICLE], is_decline=False, decline_text=DECLINE)

    assert sent == faithfulness.GuardedReply(ARTICLE["text"], faithfulness.UNSUPPORTED, False)


def test_the_models_own_decline_becomes_the_rules_text(settings):
    sent = guard_reply(
        "Sorry, I can't help with that: I can only answer questions about shoes.",
        [ARTICLE],
        is_decline=True,
        decline_text=DECLINE,
    )

    assert sent == faithfulness.GuardedReply(DECLINE, faithfulness.MODEL_DECLINE, True)


def test_the_fallback_can_be_the_decline_or_off(settings):
    settings.KNOWLEDGE_GUARD_FALLBACK = "decline"
    sent = guard_reply("We have 5 people.", [ARTICLE], is_decline=False, decline_text=DECLINE)
    assert sent == faithfulness.GuardedReply(DECLINE, faithfulness.UNSUPPORTED, True)

    settings.KNOWLEDGE_GUARD_FALLBACK = "off"
    sent = guard_reply("We have 5 people.", [ARTICLE], is_decline=False, decline_text=DECLINE)
    assert sent == faithfulness.GuardedReply("We have 5 people.", "", False)


def test_a_decline_of_a_question_scored_as_the_knowledge_bases_own_sends_the_article(settings):
    # The article answers it (the retrieval was confident): the model's decline is overruled.
    decline = "Sorry, I can't help with that: I can only answer questions about shoes."

    confident = guard_reply(
        decline, [ARTICLE], is_decline=True, decline_text=DECLINE, confident=True
    )
    unsure = guard_reply(decline, [ARTICLE], is_decline=True, decline_text=DECLINE)

    assert confident == faithfulness.GuardedReply(
        ARTICLE["text"], faithfulness.MODEL_DECLINE, False
    )
    assert unsure == faithfulness.GuardedReply(DECLINE, faithfulness.MODEL_DECLINE, True)
    settings.KNOWLEDGE_GUARD_FALLBACK = "decline"  # staff want declines: the decline it is
    assert guard_reply(
        decline, [ARTICLE], is_decline=True, decline_text=DECLINE, confident=True
    ) == faithfulness.GuardedReply(DECLINE, faithfulness.MODEL_DECLINE, True)


def test_an_address_the_article_gives_passes():
    article = {
        "title": "Contact",
        "text": "Write to help@finch.example or see https://finch.example/help for the form.",
    }
    reply = "Write to help@finch.example, or see https://finch.example/help."

    assert check_reply(reply, [article], is_decline=False) == ""
