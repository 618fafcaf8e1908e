"""Learning from agents: an agent's answer to a question the bot could not answer.

It becomes a training example: a Feedback row with `source=agent` on the agent's message,
rated up, whose `answered_question` is the customer's message it answers
(`do_record_agent_answer`). It goes through the same review setting, per-owner cap (the agent
is the owner) and golden protection as a customer's correction.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from conversations import wording_candidates
from conversations.models import Feedback, Message
from knowledge.person_request import asks_for_a_person

Role = Message.Role


def answered_question(agent_message_id: int) -> Message | None:
    """The customer's question an agent's message answers, if the bot could not answer it.

    Walking back from the agent's message: declines and person requests (with their declines)
    are skipped; the first other customer message is the question. Another agent message or a
    bot reply that was not a decline in between means it had been answered already: None.
    """
    message = Message.objects.get(pk=agent_message_id)
    earlier = (
        Message.objects.finished()
        .filter(conversation_id=message.conversation_id, id__lt=message.pk)
        .order_by("-created_at", "-id")
    )
    for candidate in earlier[:50]:
        if candidate.role == Role.USER:
            if asks_for_a_person(candidate.text):
                continue
            return candidate
        if candidate.role == Role.AGENT or not candidate.declined:
            return None
    return None


def do_record_agent_answer(
    agent_message_id: int, grounding: list[dict[str, Any]] | None = None
) -> Feedback | None:
    """Make the agent's answer a training example when it answers a question the bot could not
    (see `answered_question`); `grounding` is the articles retrieved for that question now,
    stored on the agent's message so that training shows the model what it would see."""
    message = Message.objects.select_related("conversation").get(pk=agent_message_id)
    question = answered_question(agent_message_id)
    if question is None or message.author_id is None:
        return None
    with transaction.atomic():
        Message.objects.filter(pk=message.pk).update(grounding=grounding or [])
        feedback, _ = Feedback.objects.get_or_create(
            message=message,
            owner_key=f"agent:{message.author_id}",
            defaults={
                "conversation_id": message.conversation_id,
                "user_id": message.author_id,
                "rating": Feedback.Rating.UP,
                "source": Feedback.Source.AGENT,
                "answered_question": question,
            },
        )
        feedback.message.grounding = grounding or []
        wording_candidates.do_follow_rating(feedback)  # the question, for staff to file
    return feedback
