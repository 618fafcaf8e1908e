"""What the conversation admins show of a row: who wrote a message, links between the pages."""

from __future__ import annotations

from typing import Any

from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from conversations.handoff import agent_name
from conversations.models import Feedback, Message

RATING_ICONS = {Feedback.Rating.UP: "👍", Feedback.Rating.DOWN: "👎"}
LIST_TEXT_CHARS = 80


def speaker_label(message: Message) -> str:
    """Who wrote a message: "Customer", "Bot", or "Agent (name)"."""
    if message.role == Message.Role.AGENT:
        return f"Agent ({agent_name(message.author) or 'account deleted'})"
    return message.get_role_display()


def conversation_link_html(conversation_id: object) -> str:
    url = reverse("admin:conversations_conversation_change", args=[conversation_id])
    return format_html('<a href="{}">{}</a>', url, str(conversation_id)[:8])


def owner_label(user: object | None) -> str:
    # The session key is a credential: never show it, not even in part.
    return str(user) if user is not None else "anonymous session"


def article_link(article: dict[str, Any]) -> str:
    """An article's title, linked to its admin page while that exists."""
    try:
        url = reverse("admin:knowledge_knowledgearticle_change", args=[article["id"]])
    except NoReverseMatch:  # the knowledge base has no admin (yet)
        return article["title"]
    return format_html('<a href="{}">{}</a>', url, article["title"])


def feedback_label(feedback: Feedback) -> str:
    """A customer's rating as its icon and reason; an agent's answer as a training example."""
    if feedback.source == Feedback.Source.AGENT:
        return f"training example ({feedback.get_review_status_display().lower()})"
    return f"{RATING_ICONS.get(feedback.rating, feedback.rating)} {feedback.get_reason_display()}"
