"""A few of the shop's articles, and saving them the way staff do (through the service)."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from knowledge.models import KnowledgeArticle
from knowledge.services import do_save_article

ARTICLES = {
    "Track order": (
        "orders",
        "As soon as your order ships we email you a DHL tracking link. You can also follow it "
        "anytime under My Account > Orders, or on our Track order page with your order number "
        "and email.",
    ),
    "Return window": (
        "returns",
        "You can return items within 30 days of delivery, as long as they're unworn and have "
        "the tags attached. Start a return under My Account > Orders > Return item.",
    ),
    "Payment methods": (
        "payments",
        "We accept Visa, Mastercard, PayPal and Klarna, as well as Northwind gift cards. We "
        "don't offer cash on delivery.",
    ),
    "Reset password": (
        "accounts",
        "Click Forgot password? on the login page and enter your email. We'll send you a reset "
        "link that's valid for 24 hours.",
    ),
}


def add_article(
    title: str,
    text: str | None = None,
    *,
    topic: str | None = None,
    questions: str = "",
    by=None,
):
    """Save an article through ``do_save_article``; text and topic default to ARTICLES'."""
    default_topic, default_text = ARTICLES.get(title, ("", ""))
    article = KnowledgeArticle(
        title=title,
        text=text if text is not None else default_text,
        example_questions=questions,
        topic=topic if topic is not None else default_topic,
    )
    return do_save_article(article, by=by)


def add_all_articles() -> dict[str, KnowledgeArticle]:
    return {title: add_article(title) for title in ARTICLES}


async def in_db(function, *args: Any, **kwargs: Any) -> Any:
    """``function`` run where an async test's ORM calls run (asgiref's sync thread)."""
    return await database_sync_to_async(function)(*args, **kwargs)
