"""The learning benchmark on a grounded base: the knowledge base states the old policies, the
staff-edit arm writes the new ones, and every question is answered as the chat would."""

from __future__ import annotations

import pytest

from bench.learning import runner
from bench.learning.scenario import load_scenario
from knowledge.models import KnowledgeArticle
from knowledge.retrieval import retrieve_now
from knowledge.services import intent_title
from serving.checkpoints import load_checkpoint

pytestmark = pytest.mark.django_db(transaction=True)  # retrieve_now closes its connection


@pytest.fixture
def scenario(tiny_encoder):
    scenario = load_scenario(quick=True)
    runner.seed_knowledge_base(scenario)
    return scenario


def test_staff_edits_reach_the_prompt_and_a_reset_restores_the_old_policy(scenario):
    changed = scenario.changed[0]
    question = changed.seen[0]
    old = retrieve_now(question, k=1).articles[0]
    assert old.title == intent_title(changed.name) and old.text != changed.answer

    runner.edit_changed_articles(scenario)

    edited = retrieve_now(question, k=1).articles[0]
    assert (edited.title, edited.text) == (old.title, changed.answer)
    article = KnowledgeArticle.objects.get(title=old.title)
    assert article.revisions.get().text == old.text  # the edit kept the old text, as staff's do

    runner.seed_knowledge_base(scenario)  # the next configuration starts from the old policy

    assert retrieve_now(question, k=1).articles[0].text == old.text


def test_replies_are_grounded_or_declined_as_the_chat_decides(
    scenario, tiny_checkpoint, system_turn_tokenizer, settings, monkeypatch
):
    model, tokenizer = load_checkpoint(tiny_checkpoint)[0], system_turn_tokenizer
    shown = []
    monkeypatch.setattr(
        "serving.chat_template.greedy_continuations",
        lambda model, tokenizer, prompts: shown.extend(prompts) or ["a reply"] * len(prompts),
    )
    question = scenario.changed[0].seen[0]

    settings.KNOWLEDGE_MIN_SCORE = 1.5  # above any cosine: the threshold declines everything
    declined, flags = runner._replies(model, tokenizer, [question], grounded=True)
    settings.KNOWLEDGE_MIN_SCORE = -1.0
    answered, answered_flags = runner._replies(model, tokenizer, [question], grounded=True)

    assert flags == [True] and declined[0].startswith("Sorry")
    assert answered == ["a reply"] and answered_flags == [False]
    [prompt] = shown
    text = tokenizer.decode(prompt)
    assert retrieve_now(question, k=1).articles[0].text in text and question in text


def test_the_proposals_arm_accepts_the_new_policy_and_dismisses_the_generous_one(scenario):
    from conversations.models import Conversation, Feedback, Message

    def corrected(n: int, topic_name: str, correction: str) -> None:
        article = KnowledgeArticle.objects.get(title=intent_title(topic_name))
        conversation = Conversation.objects.create(session_key=f"s{n}")
        reply = Message.objects.create(
            conversation=conversation,
            role="assistant",
            text=article.text,
            finish_reason="stop",
            grounding=[{"id": article.pk, "title": article.title, "text": article.text}],
        )
        Feedback.objects.create(
            message=reply,
            conversation=conversation,
            owner_key=f"session:s{n}",
            rating=-1,
            correction=correction,
        )

    changed = scenario.changed[0]
    corrected(0, changed.name, changed.answer)
    corrected(1, changed.name, changed.answer)
    corrected(2, scenario.generous_intents[0], scenario.generous_reply)

    assert runner.accept_proposed_edits(scenario) == (1, 1)

    assert KnowledgeArticle.objects.get(title=intent_title(changed.name)).text == changed.answer
    attacked = KnowledgeArticle.objects.get(title=intent_title(scenario.generous_intents[0]))
    assert scenario.generous_reply != attacked.text
