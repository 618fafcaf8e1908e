"""The faithfulness guard: a generated reply that loops, or says what its article does not, is
not sent as written.

A small model shown an article sometimes repeats itself ("Card-View > Card-View > …"), writes a
decline in words it learned elsewhere, or states things from memory instead of the article
("We have a team of 5 people"). Each reply is checked against the articles it was shown, once
generation ends (``check_reply``):

- ``repetition``: some run of three words comes back three times or more;
- ``model_decline``: the model wrote a decline: it is replaced by the rules' decline text, filled
  from the business profile and the knowledge base's topics (``knowledge.answering``), so that a
  decline never says a sentence the model learned;
- ``unsupported``: a number, a web address or an e-mail address the articles do not contain,
  or fewer than MIN_SUPPORT of the reply's content words found in them.

A flagged reply is replaced (``guard_reply``) by what KNOWLEDGE_GUARD_FALLBACK says: the best
article's text (the default: bench/business.py measures both) or the decline. A decline the
model writes gets the rules' decline, except where the question scored as the knowledge base's
own do (``confident``: at or above ``knowledge.calibration.confident_score``, which no off-topic
question of the calibration reached): there the model declined a question its article answers
(a wording the tuning did not foresee, shown the very article that answers it): the article is sent.
The message keeps what the model wrote and why it was replaced (``Message.generated_text``,
``Message.guard``: ``model_decline`` on a message not declined is an overruled decline).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

REPETITION = "repetition"
MODEL_DECLINE = "model_decline"
UNSUPPORTED = "unsupported"

MIN_SUPPORT = 0.5  # share of the reply's content words that must occur in the articles
REPEATED_NGRAM = 3
REPEATS = 3

WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
# A web or e-mail address: where a made-up one sends a customer is anybody's guess.
ADDRESS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|https?://[^\s)>\]]+|www\.[^\s)>\]]+", re.I)
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself just
    let me more most my no nor not now of off on once only or other our ours out over own please
    same she should so some such than that the their theirs them then there these they this
    those through to too under until up very was we were what when where which while who whom
    why will with would you your yours yourself i'm you're it's we're that's there's don't can't
    won't isn't aren't doesn't sorry thanks thank hi hello sure yes ok okay get got one may might
    must need just like know make made use used via per""".split()
)


def content_words(text: str) -> list[str]:
    """The words that carry what a text says: lower-cased, stop words and one-letter words out."""
    return [
        word
        for word in WORD.findall(text.lower())
        if word not in STOPWORDS and (len(word) > 1 or word.isdigit())
    ]


def repeats(text: str, *, n: int = REPEATED_NGRAM, times: int = REPEATS) -> bool:
    """Whether some run of ``n`` words (any tokens between spaces) occurs ``times`` times."""
    tokens = text.lower().split()
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return any(count >= times for count in grams.values())


def support(text: str, sources: Sequence[str]) -> float:
    """The share of ``text``'s content words that occur in ``sources`` (1.0 for none)."""
    words = content_words(text)
    if not words:
        return 1.0
    known = set(content_words(" ".join(sources)))
    return sum(word in known for word in words) / len(words)


def unsupported_numbers(text: str, sources: Sequence[str]) -> list[str]:
    """Numbers in ``text`` that none of ``sources`` contains."""
    known = set(NUMBER.findall(" ".join(sources)))
    return [number for number in NUMBER.findall(text) if number not in known]


def unsupported_addresses(text: str, sources: Sequence[str]) -> list[str]:
    """Web and e-mail addresses in ``text`` that none of ``sources`` contains (a trailing
    full stop or comma is not part of an address)."""
    known = " ".join(sources).lower()
    found = (address.rstrip(".,;:!?") for address in ADDRESS.findall(text))
    return [address for address in found if address.lower() not in known]


def check_reply(text: str, articles: Sequence[Mapping[str, Any]], *, is_decline: bool) -> str:
    """Why the reply must not be sent as written ("" when it may): ``articles`` are the ones
    shown to the model (``Message.grounding``), ``is_decline`` whether it reads as a decline."""
    if not articles or not text.strip():
        return ""
    if repeats(text):
        return REPETITION
    if is_decline:
        return MODEL_DECLINE
    sources = [f"{article['title']}\n{article['text']}" for article in articles]
    if (
        unsupported_numbers(text, sources)
        or unsupported_addresses(text, sources)
        or support(text, sources) < MIN_SUPPORT
    ):
        return UNSUPPORTED
    return ""


@dataclass(frozen=True)
class GuardedReply:
    text: str  # what the customer gets
    reason: str  # "" when sent as written
    declined: bool  # the text sent is a decline


def guard_reply(
    generated: str,
    articles: Sequence[Mapping[str, Any]],
    *,
    is_decline: bool,
    decline_text: str,
    confident: bool = False,
) -> GuardedReply:
    """The reply to send for ``generated`` (see the module docstring); ``confident``: the best
    article scored at or above the confident score."""
    reason = check_reply(generated, articles, is_decline=is_decline)
    fallback = settings.KNOWLEDGE_GUARD_FALLBACK
    if not reason or fallback == "off":
        return GuardedReply(generated, "", is_decline)
    if (reason == MODEL_DECLINE and not confident) or fallback == "decline":
        return GuardedReply(decline_text, reason, True)
    return GuardedReply(str(articles[0]["text"]), reason, False)
