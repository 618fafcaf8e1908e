"""Whether a customer's message asks for a person instead of the bot.

A fixed list of phrases, matched on whole words, case and punctuation ignored ("Can I talk to
a HUMAN??" matches "talk to a human"; "humanity" matches nothing). The bot then declines and
offers the team (`knowledge.answering.decide_reply`). A phrase list, not a model: it is
predictable, staff can read it, and a miss costs little, since the customer can ask again in
other words and the reply offers the team whenever the bot cannot help.
"""

from __future__ import annotations

import re

_VERBS = ("talk", "speak", "chat")
_PREPOSITIONS = ("to", "with")
_PEOPLE = (
    "a human",
    "human",
    "a person",
    "person",
    "someone",
    "somebody",
    "an agent",
    "agent",
    "a representative",
    "a manager",
    "an employee",
    "your team",
    "your staff",
    "staff",
)
# "talk to a human", "speak with someone", "chat with an agent", ...
_TALK_TO_SOMEONE = tuple(
    f"{verb} {preposition} {who}"
    for verb in _VERBS
    for preposition in _PREPOSITIONS
    for who in _PEOPLE
)
_OTHER_WAYS = (
    "real person",
    "real human",
    "live person",
    "live agent",
    "human agent",
    "want a human",
    "need a human",
    "human please",
    "customer service",
    "customer support",
    "call me",
    "phone me",
    "ring me",
    "callback",
    "transfer me",
    "connect me to",
    "connect me with",
    "put me through",
)
PHRASES: tuple[str, ...] = _TALK_TO_SOMEONE + _OTHER_WAYS

_NOT_A_WORD = re.compile(r"[\W_]+")


def _words(text: str) -> str:
    """``text`` as lower-case words between single spaces, with a space at both ends."""
    return f" {_NOT_A_WORD.sub(' ', text.lower()).strip()} "


_PHRASE_WORDS = tuple(_words(phrase) for phrase in PHRASES)


def asks_for_a_person(text: str) -> bool:
    """Whether ``text`` contains one of ``PHRASES`` as whole words, in any case."""
    words = _words(text)
    return any(phrase in words for phrase in _PHRASE_WORDS)
