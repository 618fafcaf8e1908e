"""Agents' answers as training examples: from the inbox (`conversations.handoff`) through
`learning.examples`, and what the training-run admin shows of them."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from conversations import agent_answers, handoff
from conversations.models import Conversation, Feedback, Message
from knowledge.prompt import grounded_turns
from learning.examples import build_examples_from_feedback, encode_turn
from learning.models import TrainingRun
from serving.checkpoints import load_checkpoint
from tests.agents import allow_answering

pytestmark = pytest.mark.django_db

QUESTION = "where is my order 4711"
DECLINE = "Sorry, I can't help with that."
PERSON_REQUEST = "can i talk to a human"
PASSING_ON = "Of course: I'm passing you to a person from our team, who will answer you here."
ANSWER = "Your order left our depot this morning."
USER_X = {"role": "user", "content": "x"}
SHOWN = [{"id": 3, "title": "Tracking", "text": "Track it under My Account.", "score": 0.41}]


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)[1]


def build(tokenizer, **options):
    defaults = {
        "require_approval": False,
        "per_owner_cap": 100,
        "max_tokens": 256,
        "heldout_share": 0.0,
        "seed": 0,
    }
    return build_examples_from_feedback(tokenizer, **{**defaults, **options})


@pytest.fixture
def make_agent(django_user_model):
    def make(name: str):
        return allow_answering(
            django_user_model.objects.create_user(
                username=f"{name.lower()}.agent", first_name=name, password="x", is_staff=True
            )
        )

    return make


def customer(conversation: Conversation, text: str) -> Message:
    return Message.objects.create(conversation=conversation, role="user", text=text)


def bot(conversation: Conversation, text: str, *, declined: bool) -> Message:
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        text=text,
        declined=declined,
        finish_reason="stop",
    )


def hand_over(conversation: Conversation, agent, reason: str = "declines") -> None:
    assert handoff.do_request_handoff(conversation.pk, reason)
    handoff.do_claim(conversation.pk, agent.pk)


def agent_says(conversation: Conversation, agent, text: str = ANSWER, grounding=None):
    """The agent's reply, then the inbox's `do_record_agent_answer`: its Feedback, or None."""
    sent = handoff.do_post_agent_message(conversation.pk, agent.pk, text)
    return agent_answers.do_record_agent_answer(sent.message_id, grounding)


def declined_question(agent, question: str = QUESTION, answer: str = ANSWER, grounding=None):
    """question → bot decline → handoff → the agent's answer; returns its Feedback."""
    conversation = Conversation.objects.create(session_key=f"customer-{question}")
    customer(conversation, question)
    bot(conversation, DECLINE, declined=True)
    hand_over(conversation, agent)
    return agent_says(conversation, agent, answer, grounding)


def test_an_agents_answer_is_one_desirable_example_after_the_question(tokenizer, make_agent):
    sam = make_agent("Sam")
    feedback = declined_question(sam, grounding=SHOWN)

    examples = build(tokenizer)

    assert feedback.source == Feedback.Source.AGENT and feedback.owner_key == f"agent:{sam.pk}"
    assert feedback.answered_question.text == QUESTION
    [example] = examples.train
    assert (example.label, example.feedback_id, example.owner_key) == (
        1,
        feedback.pk,
        f"agent:{sam.pk}",
    )
    # The prompt is the conversation up to the question (the decline left out), grounded in
    # the articles retrieved for it; the reply is the agent's text.
    context = grounded_turns([{"role": "user", "content": QUESTION}], SHOWN)
    assert (example.prompt_ids, example.reply_ids) == encode_turn(
        tokenizer, context, ANSWER, max_tokens=256
    )
    prompt = tokenizer.decode(list(example.prompt_ids))
    assert QUESTION in prompt and "help with that" not in prompt
    # After the question comes only what the template writes to open the reply.
    bare = tokenizer.decode(list(encode_turn(tokenizer, [USER_X], "y", max_tokens=256)[0]))
    assert prompt.endswith(QUESTION + bare[bare.rindex("x") + 1 :])
    assert tokenizer.decode(list(example.reply_ids)).strip().startswith("Your order left")
    assert examples.counts["agent_answers"] == 1 and examples.counts["desirable"] == 1
    assert examples.counts["undesirable"] == 0


def test_the_question_before_a_person_request_is_the_one_answered(tokenizer, make_agent):
    sam = make_agent("Sam")
    conversation = Conversation.objects.create(session_key="c")
    customer(conversation, QUESTION)
    bot(conversation, DECLINE, declined=True)
    customer(conversation, PERSON_REQUEST)
    bot(conversation, PASSING_ON, declined=True)
    hand_over(conversation, sam, "asked")

    feedback = agent_says(conversation, sam)
    [example] = build(tokenizer).train

    assert feedback.answered_question.text == QUESTION
    context = [{"role": "user", "content": QUESTION}]
    assert example.prompt_ids == encode_turn(tokenizer, context, ANSWER, max_tokens=256)[0]
    assert PERSON_REQUEST not in tokenizer.decode(list(example.prompt_ids))


def test_the_cap_per_owner_applies_to_each_agent(tokenizer, make_agent):
    sam, kim = make_agent("Sam"), make_agent("Kim")
    sams = [
        declined_question(sam, f"question {n} from a customer", f"answer {n}") for n in range(3)
    ]
    kims = declined_question(kim, "kim's customer question", "kim's answer")

    examples = build(tokenizer, per_owner_cap=2)

    assert set(examples.feedback_ids) == {sams[2].pk, sams[1].pk, kims.pk}  # Sam's two newest
    assert examples.counts["agent_answers"] == 3 and examples.counts["capped_feedback"] == 1
    per_owner = {e.owner_key for e in examples.train}
    assert per_owner == {f"agent:{sam.pk}", f"agent:{kim.pk}"}


def test_rejected_agent_answers_are_never_used(tokenizer, make_agent):
    sam = make_agent("Sam")
    kept = declined_question(sam, "first question", "first answer")
    rejected = declined_question(sam, "second question", "second answer")
    Feedback.objects.filter(pk=rejected.pk).update(review_status="rejected")

    assert build(tokenizer).feedback_ids == [kept.pk]


def test_with_review_required_only_approved_agent_answers_are_used(tokenizer, make_agent):
    sam = make_agent("Sam")
    approved = declined_question(sam, "first question", "first answer")
    pending = declined_question(sam, "second question", "second answer")
    Feedback.objects.filter(pk=approved.pk).update(review_status="approved")

    assert build(tokenizer, require_approval=True).feedback_ids == [approved.pk]
    assert sorted(build(tokenizer).feedback_ids) == sorted([approved.pk, pending.pk])


def test_an_agent_message_after_an_answered_question_gives_no_example(tokenizer, make_agent):
    sam = make_agent("Sam")
    answered = Conversation.objects.create(session_key="a")
    customer(answered, QUESTION)
    bot(answered, "It ships tomorrow.", declined=False)
    hand_over(answered, sam, "asked")  # the "Talk to a person" button
    after_bot = agent_says(answered, sam, "Hi, Sam here.")

    followed_up = Conversation.objects.create(session_key="b")
    customer(followed_up, "second " + QUESTION)
    bot(followed_up, DECLINE, declined=True)
    hand_over(followed_up, sam)
    first = agent_says(followed_up, sam, ANSWER)
    second = agent_says(followed_up, sam, "Anything else?")

    assert after_bot is None and second is None
    assert first is not None
    assert build(tokenizer).feedback_ids == [first.pk]


def test_a_person_request_alone_gives_no_example(tokenizer, make_agent):
    sam = make_agent("Sam")
    conversation = Conversation.objects.create(session_key="c")
    customer(conversation, PERSON_REQUEST)
    bot(conversation, PASSING_ON, declined=True)
    hand_over(conversation, sam, "asked")

    assert agent_says(conversation, sam) is None
    assert not Feedback.objects.exists()
    examples = build(tokenizer)
    assert examples.feedback_ids == [] and examples.counts["agent_answers"] == 0


# --- the training run's admin -----------------------------------------------------------------


def test_a_runs_page_shows_and_links_the_agent_answers_it_learned_from(make_agent):
    sam = make_agent("Sam")
    used = declined_question(sam, "first question", "first answer")
    declined_question(sam, "second question", "second answer")  # not learned from
    run = TrainingRun.objects.create(
        trigger="operator",
        status=TrainingRun.Status.SUCCEEDED,
        example_counts={"feedback": 3, "train": 3, "heldout": 0, "agent_answers": 2},
    )
    other = TrainingRun.objects.create(trigger="operator", status=TrainingRun.Status.SUCCEEDED)
    Feedback.objects.filter(pk=used.pk).update(used_by_run=run)
    customer_rating = Feedback.objects.create(
        message=bot(used.conversation, "a bot reply", declined=False),
        conversation=used.conversation,
        owner_key="session:x",
        rating=1,
        used_by_run=run,
    )
    client = Client()
    client.force_login(type(sam).objects.create_superuser("boss", password="x"))

    listing = client.get(reverse("admin:learning_trainingrun_changelist")).content.decode()
    detail = client.get(reverse("admin:learning_trainingrun_change", args=[run.pk]))

    feedback_url = reverse("admin:conversations_feedback_changelist")
    link = f"{feedback_url}?used_by_run__id__exact={run.pk}&amp;source=agent"
    assert f'<a href="{link}">1 agent answer(s)</a>' in listing
    assert "3 train / 0 held out, 2 from agents&#x27; answers" in listing
    page = detail.content.decode()
    assert f'<a href="{link}">1 agent answer(s)</a>' in page
    assert "Agents&#x27; answers (from the inbox)" in page
    other_page = client.get(reverse("admin:learning_trainingrun_change", args=[other.pk]))
    assert "agent answer(s)</a>" not in other_page.content.decode()

    filtered = client.get(feedback_url, {"used_by_run__id__exact": run.pk, "source": "agent"})
    assert [row.pk for row in filtered.context["cl"].result_list] == [used.pk]
    by_run = client.get(feedback_url, {"used_by_run__id__exact": run.pk})
    assert {row.pk for row in by_run.context["cl"].result_list} == {used.pk, customer_rating.pk}
