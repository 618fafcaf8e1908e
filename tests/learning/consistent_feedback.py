"""Feedback a tiny model can learn from deterministically, for the training-run tests.

Customers ask the corpus questions of the intents the tiny starter model knows; a reply stating
the corpus answer is rated up, an unhelpful brush-off is rated down. The brush-off shares no
answer text with the corpus, so pushing it down costs no retention, and the held-out margin of
a candidate trained on the rest rises: with ``PROMOTABLE`` hyper-parameters (pinned here so that
tuning the defaults does not change what these tests prove) the gate promotes it.
"""

from __future__ import annotations

from typing import Any

from bench.learning.rated_replies import store_rated_reply
from conversations.models import Feedback
from knowledge.demo.corpus import load_corpus

# A gentle update (small α, strong pull, unlikelihood on the brush-off) that the gate promotes
# on the tiny model even after a few steps.
PROMOTABLE = {
    "LEARNING_RATE": 3e-4,
    "LEARNING_ANCHOR_STRENGTH": 10.0,
    "LEARNING_REGULARIZER": "l2sp",
    "LEARNING_LOSS": "sft_ul",
    "LEARNING_UNLIKELIHOOD_WEIGHT": 1.0,
    "LEARNING_REPLAY_SHARE": 0.25,
    "LEARNING_AVERAGE_WITH_ANCHOR": 0.0,
    "LEARNING_EPOCHS": 3,
    "LEARNING_BATCH_SIZE": 8,
    "LEARNING_SEED": 0,
    "LEARNING_LORA_RANK": 0,
    # fp32 on every machine: "auto" autocasts to bf16 on CPUs with bf16 instructions.
    "LEARNING_AUTOCAST": "off",
}
BRUSH_OFF = "Sorry, I cannot help with that. Please call us later."
TINY_INTENTS = 4  # StarterConfig.tiny(): max_intents=4


def pin_promotable_hyperparameters(settings: Any) -> None:
    """Set PROMOTABLE on pytest-django's ``settings``: runs requested now store these."""
    for name, value in PROMOTABLE.items():
        setattr(settings, name, value)


def rate_consistently(rounds: int = 2, *, owner_prefix: str = "s") -> list[Feedback]:
    """``rounds`` × (3 questions × 4 intents) × (one up, one down) feedback rows, each owner new."""
    intents = load_corpus().intents[:TINY_INTENTS]
    rows = []
    for round_ in range(rounds):
        for i, intent in enumerate(intents):
            for q, question in enumerate(intent.questions[:3]):
                for rating, reply in ((1, intent.answer), (-1, BRUSH_OFF)):
                    owner = f"{owner_prefix}-{round_}-{i}-{q}-{rating}"
                    rows.append(store_rated_reply(question, reply, rating, owner))
    return rows
