"""Training examples from the customers' feedback.

A rated reply gives (context, reply, +1 or −1); a correction gives (context, correction, +1).
The context is the conversation before the rated reply, after a system turn with the
knowledge-base articles the reply was written from, as they were shown then (stored in
``Message.grounding``; ``chat_template.grounded_turns``), not as they read today: training sees
what the model saw. It is rendered through the model's chat template and cut from the left
(whole turns first, the system turn stays) to fit. One owner (browser session or user)
contributes at most ``per_owner_cap`` examples to a run, newest first, so that one person, or one
adversary, cannot dominate it; and since browser sessions cost nothing, the sessions of one network
together give at most ``network_share`` of its feedback (LEARNING_MAX_NETWORK_SHARE).

Both examples of one feedback row go to the same side of the held-out split, which is a pure
function of (seed, feedback id), so reruns split alike.

A correction is text a customer typed that would become what the bot says: it is learned only
once staff approve its rating (``unreviewed_text``, LEARNING_TRAIN_UNREVIEWED_TEXT, learns it
as typed). Until then its rating counts as a rating, and
``counts["corrections_awaiting_review"]`` says how many were left out.

A reply the bot declined (``Message.declined``: the articles did not match, or the customer
asked for a person) gives examples like any other, with the prompt the model would have seen:
a thumbs-up teaches the model to decline there too, a thumbs-down says the question deserved
an answer (the threshold was too strict), and a correction is the answer it should have had.
A thumbs-down that only says "I wanted a person sooner" is noise that review rejects.

An agent's answer to a question the bot could not answer (``Feedback.source`` = agent,
``conversations.handoff``) gives one desirable example: the conversation up to that question,
grounded in the articles retrieved for it, then the agent's reply. The agent is its owner for
the per-owner cap, and it is reviewed and protected like a correction.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from learning.feedback import (
    AGENT_ANSWER,
    FeedbackSet,
    RatedTurn,
    rated_turns,
    usable_feedback,
)
from serving.chat_template import turn_ids, without_oldest_turn


@dataclass(frozen=True)
class TrainingExample:
    prompt_ids: tuple[int, ...]
    reply_ids: tuple[int, ...]
    label: int
    feedback_id: int
    owner_key: str


@dataclass
class ExampleSet:
    train: list[TrainingExample] = field(default_factory=list)
    heldout: list[TrainingExample] = field(default_factory=list)
    feedback_ids: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    data_hash: str = ""


def encode_turn(
    tokenizer: Any, context: Iterable[dict[str, str]], reply: str, *, max_tokens: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Prompt and reply token ids through the chat template (``chat_template.turn_ids``), the
    reply cut to half of ``max_tokens`` and the context cut from the left: whole turns first
    (after a leading system turn, which stays: ``chat_template.without_oldest_turn``)."""
    turns = list(context)
    reply_budget = max(1, max_tokens // 2)
    while True:
        prompt, reply_ids = turn_ids(tokenizer, turns, reply)
        reply_ids = reply_ids[:reply_budget]
        if len(prompt) + len(reply_ids) <= max_tokens:
            break
        fewer = without_oldest_turn(turns)
        if fewer is None:
            break
        turns = fewer
    overflow = len(prompt) + len(reply_ids) - max_tokens
    if overflow > 0:
        prompt = prompt[overflow:]
    return tuple(prompt), tuple(reply_ids)


def split_point(key: int | str, *, seed: int) -> float:
    """Where ``key`` (a feedback id, or a source) falls in [0, 1): a fixed hash, so the same
    rows judge every run with the same seed."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def is_heldout(feedback_id: int, *, seed: int, share: float) -> bool:
    return split_point(feedback_id, seed=seed) < share


def network_quota(networks: Sequence[str], share: float) -> dict[str, int]:
    """How many rows each known network (a non-empty key) may give, so that none gives more
    than ``share`` of the rows that remain once every network is held to it (at least one row
    each: with a single network and no other rows, that one row is all a run gets from it)."""
    counts = Counter(network for network in networks if network)
    unknown = len(networks) - sum(counts.values())
    quota = dict(counts)
    while True:  # each pass can only lower the total, and so the cap: it ends
        cap = max(1, math.floor(share * (unknown + sum(quota.values()))))
        lowered = {network: min(count, cap) for network, count in counts.items()}
        if lowered == quota:
            return quota
        quota = lowered


def build_examples_from_feedback(
    tokenizer: Any,
    *,
    require_approval: bool,
    per_owner_cap: int,
    max_tokens: int,
    heldout_share: float,
    seed: int,
    feedback: FeedbackSet | None = None,
    unreviewed_text: bool = False,
    network_share: float = 1.0,
) -> ExampleSet:
    """Examples from usable feedback, capped per owner and split into train and held-out;
    corrections only from approved ratings unless ``unreviewed_text``; one network's sessions
    together give at most ``network_share`` of the feedback rows the run uses (at least one:
    ``network_quota``)."""
    queryset = (
        feedback if feedback is not None else usable_feedback(require_approval=require_approval)
    )
    per_owner: dict[str, int] = defaultdict(int)
    result = ExampleSet()
    digest = hashlib.sha256()
    capped = corrections = agent_answers = awaiting = network_capped = 0
    kept: list[tuple[RatedTurn, list[tuple[str, int]]]] = []
    for turn in rated_turns(queryset):  # newest first, so the caps keep the newest
        wanted = [(turn.reply, turn.label)]
        if turn.correction and (turn.approved or unreviewed_text):
            wanted.append((turn.correction, 1))
        if per_owner[turn.owner_key] + len(wanted) > per_owner_cap:
            capped += 1
            continue
        per_owner[turn.owner_key] += len(wanted)
        kept.append((turn, wanted))
    quota = network_quota([turn.network for turn, _ in kept], network_share)
    per_network: dict[str, int] = defaultdict(int)
    used = []
    for turn, wanted in kept:
        if turn.network and per_network[turn.network] >= quota[turn.network]:
            network_capped += 1
            continue
        per_network[turn.network] += 1
        used.append((turn, wanted))
    for turn, wanted in used:
        awaiting += bool(turn.correction) and len(wanted) == 1
        corrections += len(wanted) > 1
        agent_answers += turn.source == AGENT_ANSWER
        result.feedback_ids.append(turn.feedback_id)
        heldout = is_heldout(turn.feedback_id, seed=seed, share=heldout_share)
        side = result.heldout if heldout else result.train
        for reply, label in wanted:
            prompt_ids, reply_ids = encode_turn(
                tokenizer, turn.context, reply, max_tokens=max_tokens
            )
            side.append(
                TrainingExample(prompt_ids, reply_ids, label, turn.feedback_id, turn.owner_key)
            )
            digest.update(
                json.dumps([turn.feedback_id, label, list(prompt_ids), list(reply_ids)]).encode()
            )
    everything = result.train + result.heldout
    result.counts = {
        "feedback": len(result.feedback_ids),
        "train": len(result.train),
        "heldout": len(result.heldout),
        "desirable": sum(1 for e in everything if e.label > 0),
        "undesirable": sum(1 for e in everything if e.label < 0),
        "corrections": corrections,
        "corrections_awaiting_review": awaiting,
        "agent_answers": agent_answers,
        "capped_feedback": capped,
        "network_capped_feedback": network_capped,
        # The most feedback rows one known network gave this run (at most the cap).
        "largest_network_feedback": max(
            (rows for network, rows in per_network.items() if network), default=0
        ),
    }
    result.data_hash = digest.hexdigest()
    return result


def kto_rows(feedback: FeedbackSet) -> Iterator[dict[str, Any]]:
    """JSONL rows in the conversational prompt/completion/label format of TRL's KTO trainer."""
    for turn in rated_turns(feedback):
        prompt = [dict(t) for t in turn.context]
        yield {
            "prompt": prompt,
            "completion": [{"role": "assistant", "content": turn.reply}],
            "label": turn.label > 0,
        }
        if turn.correction:
            yield {
                "prompt": prompt,
                "completion": [{"role": "assistant", "content": turn.correction}],
                "label": True,
            }
