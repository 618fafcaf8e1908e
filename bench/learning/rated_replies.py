"""Rated replies written straight to the database, for benchmarks and tests that need feedback.

Each one is what the chat leaves behind when a customer asks, reads a finished reply and rates
it: a conversation of its own, the question, the reply and the customer's feedback. No model
runs, so the rows are the same every time.
"""

from __future__ import annotations

from conversations.models import Conversation, Feedback, Message
from conversations.services import Owner


def store_rated_reply(
    question: str, reply: str, rating: int, session: str, correction: str = ""
) -> Feedback:
    """``reply`` to ``question`` rated ``rating`` (±1) by the anonymous browser ``session``."""
    conversation = Conversation.objects.create(session_key=session)
    Message.objects.create(conversation=conversation, role=Message.Role.USER, text=question)
    answer = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        text=reply,
        finish_reason=Message.FinishReason.STOP,
    )
    return Feedback.objects.create(
        message=answer,
        conversation=conversation,
        owner_key=Owner(user_id=None, session_key=session).key,
        rating=rating,
        correction=correction,
    )
