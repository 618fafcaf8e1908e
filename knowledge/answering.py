"""How a reply is decided: answer from the retrieved articles, or decline (and why).

The answering layer every caller shares: the chat (``conversations.replying``), the base
model's tuning (``learning.grounded_tuning``) and the benchmarks. It holds the rules and the
fixed texts; it stores nothing and runs no model.

With no knowledge base (retrieval disabled) the bot answers from the conversation alone.
Otherwise it declines when the customer asks for a person (``knowledge.person_request``) or
when the best article scores below the decline threshold (``knowledge.calibration``,
calibrated on the knowledge base): no model runs, the reply is a fixed
text that says what the bot can help with and how to reach the team (``knowledge.profile``).
Else the model answers from a prompt that starts with the articles
(``knowledge.prompt.grounded_turns``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from knowledge.calibration import min_score
from knowledge.person_request import asks_for_a_person
from knowledge.profile import current_profile
from knowledge.prompt import grounded_turns
from knowledge.retrieval import Retrieval

# The two declines: fixed texts, so that a customer gets the same clear answer every time.
DECLINE_OFF_TOPIC = (
    "Sorry, I can't help with that: I can only answer questions about {topics}. If you'd "
    "like to talk to a person, our team can take over: {contact}."
)
DECLINE_PERSON_ASKED = (
    "Of course: a person from our team can take over. You can reach them at {contact}. "
    "Until then, I'm happy to answer questions about {topics}."
)
# The same, when the conversation is handed to a person (HANDOFF_ENABLED).
DECLINE_HANDING_OFF = (
    "Of course: I'm passing you to a person from our team, who will answer you here."
)
# How every decline starts: a model tuned to decline (learning.grounded_tuning) writes it too.
DECLINE_OPENINGS = tuple(
    template.split("{")[0].strip()
    for template in (DECLINE_OFF_TOPIC, DECLINE_PERSON_ASKED, DECLINE_HANDING_OFF)
)


@dataclass(frozen=True)
class ReplyPlan:
    """How to answer: generate from `turns`, or send `decline_text` instead (when not "").

    `grounding` is the articles shown, as stored on the reply: [{"id", "title", "text",
    "score"}], best first; `turns` the engine's prompt, grounded in them when there are any.
    """

    turns: list[dict[str, str]]
    grounding: list[dict[str, Any]]
    decline_text: str = ""
    person_asked: bool = False

    @property
    def declined(self) -> bool:
        return bool(self.decline_text)


def decline_text(*, person_asked: bool, topics: Sequence[str]) -> str:
    """The decline's text: what the bot can help with (the profile's words for it, else
    `topics`), and the team's contact."""
    profile = current_profile()
    names = list(dict.fromkeys(topic for topic in topics if topic))  # unique, in order
    if profile.helps_with:
        listed = profile.helps_with
    elif not names:
        listed = "what our help articles cover"
    elif len(names) == 1:
        listed = names[0]
    else:
        listed = f"{', '.join(names[:-1])} and {names[-1]}"
    if person_asked and settings.HANDOFF_ENABLED:
        return DECLINE_HANDING_OFF
    template = DECLINE_PERSON_ASKED if person_asked else DECLINE_OFF_TOPIC
    return template.format(topics=listed, contact=profile.contact)


def is_decline(text: str) -> bool:
    """Whether a reply is a decline: the fixed text, or the model's own rendering of it (the
    base model is tuned to decline what its articles do not answer)."""
    return text.lstrip().startswith(DECLINE_OPENINGS)


def decline_topics(retrieval: Retrieval) -> list[str]:
    """What a decline says the bot can help with: the knowledge base's topics (without any, the
    decline says "what our help articles cover": the titles of the articles retrieved are
    often questions themselves, and never a list of what the bot knows)."""
    return list(retrieval.topics)


def grounding_of(retrieval: Retrieval) -> list[dict[str, Any]]:
    """The retrieved articles as a message stores them (`Message.grounding`)."""
    return [
        {"id": article.id, "title": article.title, "text": article.text, "score": article.score}
        for article in retrieval.articles
    ]


def decide_reply(
    question: str,
    retrieval: Retrieval,
    turns: list[dict[str, str]],
    *,
    topics: Sequence[str] | None = None,
) -> ReplyPlan:
    """Answer `question` (the last of `turns`) from the retrieved articles, or decline.

    Retrieval disabled: the conversation as it is, nothing shown. Otherwise the bot declines
    when the customer asks for a person, whatever the articles' scores, or when the best one
    scores below the threshold in force (`retrieval.min_score`). The decline names `topics`,
    what the bot can help with; by default the knowledge base's topics.
    """
    if not retrieval.enabled:
        return ReplyPlan(turns=turns, grounding=[])
    grounding = grounding_of(retrieval)
    person_asked = asks_for_a_person(question)
    threshold = min_score() if retrieval.min_score is None else retrieval.min_score
    if person_asked or retrieval.best_score < threshold:
        topics = decline_topics(retrieval) if topics is None else topics
        text = decline_text(person_asked=person_asked, topics=topics)
        return ReplyPlan(
            turns=turns, grounding=grounding, decline_text=text, person_asked=person_asked
        )
    return ReplyPlan(turns=grounded_turns(turns, grounding), grounding=grounding)
