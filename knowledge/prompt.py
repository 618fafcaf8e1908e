"""The grounded prompt's turns, as text: what the model is shown for a customer's message.

A grounded prompt (``grounded_turns``) starts with a system turn that holds the knowledge-base
articles retrieved for the customer's question and names the business (``knowledge.profile``);
the chat prompts with it, and the training examples rebuild it from the articles stored with
the reply, so the model learns from the prompt it saw. A template that renders no system turn
(the starter's) simply ignores it. Turning these turns into token ids is the model's business
(``serving.chat_template``).

Text written by customers, agents or staff never becomes the template's markup: a customer who
types ``<|im_start|>system`` would otherwise open a real system turn. ``neutralised`` breaks
every control token in a turn's text (a zero-width space after its first character), so that a
tokenizer reads it as plain text; the chat template (``serving.chat_template.chat_ids``, with the
tokenizer's own special tokens) and the remote backend (``serving.remote_generation``) apply it
to every turn before templating.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.conf import settings

from knowledge.profile import business_name

Turn = dict[str, str]
# A knowledge-base article as shown to the model and stored on the reply (Message.grounding):
# {"id", "title", "text", "score"}; the prompt uses the title and the text.
Article = Mapping[str, Any]


# The markup chat templates use for control tokens: ChatML's <|im_start|> and Llama 3's
# <|eot_id|> (any <|…|>), Llama 2's [INST] and <<SYS>>, the sequence tokens <s> and </s>.
CONTROL_MARKUP = re.compile(r"<\|[^|<>\s]{1,64}\|>|</?s>|\[/?INST\]|<</?SYS>>")
BREAK = "\u200b"  # zero-width space


def _broken(token: str) -> str:
    return token[0] + BREAK + token[1:]


def neutralised(text: str, tokens: Iterable[str] = ()) -> str:
    """``text`` with every control token in it broken, so that no tokenizer reads it as one:
    the common chat markup (``CONTROL_MARKUP``) and ``tokens`` (a tokenizer's own special
    tokens, longest first)."""
    for token in tokens:
        if len(token) > 1 and token in text:
            text = text.replace(token, _broken(token))
    return CONTROL_MARKUP.sub(lambda match: _broken(match.group(0)), text)


def neutralised_turns(turns: Sequence[Turn], tokens: Iterable[str] = ()) -> list[Turn]:
    """``turns`` with each one's text ``neutralised``."""
    tokens = tuple(tokens)
    return [{**turn, "content": neutralised(turn["content"], tokens)} for turn in turns]


def as_prompt_role(role: str) -> str:
    """A message's role in a model's prompt: an agent's message is an assistant turn (the bot
    continues what the person said)."""
    return "assistant" if role == "agent" else role


def grounded_turns(
    turns: Sequence[Turn], articles: Sequence[Article], *, history: int | None = None
) -> list[Turn]:
    """``turns`` after a system turn that asks the model to answer from ``articles`` (best
    first, numbered, each its title and text); with no articles, ``turns`` as they are.

    A grounded prompt keeps the ``history`` (CHAT_HISTORY_TURNS) turns before the last
    one: the articles were retrieved for the last message alone, and a small model shown
    earlier answers copies their wording instead of the article's."""
    copied = [dict(turn) for turn in turns]
    if not articles:
        return copied
    if history is None:
        history = settings.CHAT_HISTORY_TURNS
    copied = copied[-(history + 1) :]
    shown = "\n\n".join(
        f"{number}. {article['title']}\n{article['text']}"
        for number, article in enumerate(articles, start=1)
    )
    instructions = (
        f"You are the customer-service assistant of {business_name()}. Answer the "
        "customer's last message from these articles only. If they do not answer it, say so "
        "and offer to put the customer in touch with the team."
    )
    return [{"role": "system", "content": f"{instructions}\n\n{shown}"}, *copied]
