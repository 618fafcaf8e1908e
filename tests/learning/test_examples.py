"""Training examples from feedback: labels, corrections, review, caps, context, grounding,
declines, split, hash."""

from __future__ import annotations

import pytest

from conversations.models import Conversation, Feedback, Message
from knowledge.prompt import grounded_turns
from learning.examples import build_examples_from_feedback, encode_turn, kto_rows
from learning.feedback import usable_feedback
from serving.checkpoints import load_checkpoint

pytestmark = pytest.mark.django_db

USER, BOT = "user", "assistant"


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)[1]


def chat(owner: str, *turns: tuple[str, str, str]) -> list[Message]:
    """A conversation of (role, text, finish_reason) turns owned by session ``owner``."""
    conversation = Conversation.objects.create(session_key=owner)
    return [
        Message.objects.create(
            conversation=conversation, role=role, text=text, finish_reason=finish
        )
        for role, text, finish in turns
    ]


def rate(message: Message, rating: int, *, correction: str = "", review: str = "pending"):
    return Feedback.objects.create(
        message=message,
        conversation=message.conversation,
        owner_key=f"session:{message.conversation.session_key}",
        rating=rating,
        correction=correction,
        review_status=review,
    )


def build(tokenizer, **options):
    defaults = {
        "require_approval": False,
        "per_owner_cap": 100,
        "max_tokens": 256,
        "heldout_share": 0.0,
        "seed": 0,
    }
    return build_examples_from_feedback(tokenizer, **{**defaults, **options})


def rated_pair(owner: str, question: str, reply: str, rating: int, **feedback):
    _, answer = chat(owner, (USER, question, ""), (BOT, reply, "stop"))
    return rate(answer, rating, **feedback)


def test_it_labels_thumbs_up_desirable_and_thumbs_down_undesirable(tokenizer):
    up = rated_pair("a", "where is my order", "Use the tracking link.", 1)
    down = rated_pair("b", "refund?", "I like turtles.", -1)

    examples = build(tokenizer)

    by_feedback = {e.feedback_id: e for e in examples.train}
    assert by_feedback[up.pk].label == 1 and by_feedback[down.pk].label == -1
    context = [{"role": USER, "content": "where is my order"}]
    assert (by_feedback[up.pk].prompt_ids, by_feedback[up.pk].reply_ids) == encode_turn(
        tokenizer, context, "Use the tracking link.", max_tokens=256
    )
    assert examples.counts["desirable"] == 1 and examples.counts["undesirable"] == 1
    assert sorted(examples.feedback_ids) == sorted([up.pk, down.pk])


def test_a_correction_is_a_desirable_example_with_the_corrected_reply(tokenizer):
    fixed = rated_pair(
        "a", "return window?", "Forever.", -1, correction="  30 days.  ", review="approved"
    )

    examples = build(tokenizer)

    context = [{"role": USER, "content": "return window?"}]
    got = {(e.reply_ids, e.label) for e in examples.train if e.feedback_id == fixed.pk}
    assert got == {
        (encode_turn(tokenizer, context, "Forever.", max_tokens=256)[1], -1),
        (encode_turn(tokenizer, context, "30 days.", max_tokens=256)[1], 1),
    }
    assert examples.counts["corrections"] == 1 and examples.counts["feedback"] == 1


def test_rejected_and_already_used_feedback_is_never_used(tokenizer):
    from learning.models import TrainingRun

    kept = rated_pair("a", "hi", "Hello!", 1, review="approved")
    rated_pair("b", "hi", "Go away.", 1, review="rejected")
    used = rated_pair("c", "hi", "Hey.", 1)
    used.used_by_run = TrainingRun.objects.create(trigger="command", status="succeeded")
    used.save()

    examples = build(tokenizer)

    assert examples.feedback_ids == [kept.pk]


def test_it_honours_the_review_setting(tokenizer):
    approved = rated_pair("a", "hi", "Hello!", 1, review="approved")
    pending = rated_pair("b", "hi", "Hi there.", 1, review="pending")

    assert sorted(build(tokenizer).feedback_ids) == sorted([approved.pk, pending.pk])
    assert build(tokenizer, require_approval=True).feedback_ids == [approved.pk]
    assert list(usable_feedback(require_approval=True)) == [approved]


def test_one_owner_contributes_at_most_the_cap_newest_first(tokenizer):
    loud = [rated_pair("loud", f"q{n}", f"answer {n}", 1) for n in range(5)]
    quiet = rated_pair("quiet", "q", "answer", -1)
    with_correction = rated_pair("fixer", "q", "bad", -1, correction="good", review="approved")
    rated_pair("fixer", "q2", "ok", 1)  # newer: takes one of fixer's two slots

    examples = build(tokenizer, per_owner_cap=2)

    used = set(examples.feedback_ids)
    assert {f.pk for f in loud} & used == {loud[4].pk, loud[3].pk}  # the two newest
    assert quiet.pk in used
    # Its two examples (reply + correction) no longer fit beside the newer one.
    assert with_correction.pk not in used
    assert examples.counts["capped_feedback"] == 4
    assert (
        max(
            sum(1 for e in examples.train if e.owner_key == owner)
            for owner in {e.owner_key for e in examples.train}
        )
        == 2
    )


def test_the_context_is_cut_from_the_left_to_fit(tokenizer):
    long_turns = []
    for n in range(12):
        long_turns += [
            (USER, f"question number {n} about my order and the tracking link", ""),
            (BOT, f"answer number {n}: use the tracking link in your email", "stop"),
        ]
    *_, last = chat("a", *long_turns, (USER, "and the refund?", ""), (BOT, "Five days.", "stop"))
    rate(last, 1)

    wide = build(tokenizer, max_tokens=4096).train[0]
    narrow = build(tokenizer, max_tokens=96).train[0]

    assert len(narrow.prompt_ids) + len(narrow.reply_ids) <= 96 < len(wide.prompt_ids)
    assert narrow.reply_ids == wide.reply_ids
    # Whole turns are cut from the left: the narrow prompt (after its start-of-text token) is
    # the end of the wide one.
    assert wide.prompt_ids[-(len(narrow.prompt_ids) - 1) :] == narrow.prompt_ids[1:]
    question = tokenizer.encode("and the refund?", add_special_tokens=False)
    assert _contains(narrow.prompt_ids, question)
    first = tokenizer.encode("question number 0", add_special_tokens=False)
    assert _contains(wide.prompt_ids, first) and not _contains(narrow.prompt_ids, first)


SHOWN = [
    {"id": 4, "title": "Refund timing", "text": "Refunds reach you within 5 days.", "score": 0.71},
    {
        "id": 8,
        "title": "Refund method",
        "text": "We refund to the card you paid with.",
        "score": 0.5,
    },
]


def grounded_pair(owner: str, question: str, reply: str, rating: int, **reply_fields):
    conversation = Conversation.objects.create(session_key=owner)
    Message.objects.create(conversation=conversation, role=USER, text=question)
    answer = Message.objects.create(
        conversation=conversation,
        role=BOT,
        text=reply,
        finish_reason="stop",
        grounding=SHOWN,
        **reply_fields,
    )
    return rate(answer, rating)


def test_a_grounded_reply_is_learned_with_the_articles_it_was_shown(system_turn_tokenizer):
    feedback = grounded_pair("a", "when is my refund?", "Within 5 days.", 1)

    (example,) = build(system_turn_tokenizer).train
    (row,) = kto_rows(Feedback.objects.all())

    context = grounded_turns([{"role": USER, "content": "when is my refund?"}], SHOWN)
    assert (example.prompt_ids, example.reply_ids) == encode_turn(
        system_turn_tokenizer, context, "Within 5 days.", max_tokens=256
    )
    article = system_turn_tokenizer.encode(
        "Refunds reach you within 5 days.", add_special_tokens=False
    )
    assert _contains(example.prompt_ids, article)
    assert example.feedback_id == feedback.pk
    assert row["prompt"] == context


def test_a_grounded_context_is_cut_after_its_articles(system_turn_tokenizer, settings):
    settings.CHAT_HISTORY_TURNS = 100  # the whole conversation, cut to the token budget
    conversation = Conversation.objects.create(session_key="a")
    for n in range(12):
        Message.objects.create(
            conversation=conversation, role=USER, text=f"question number {n} about my refund"
        )
        Message.objects.create(
            conversation=conversation, role=BOT, text=f"answer {n}: wait", finish_reason="stop"
        )
    Message.objects.create(conversation=conversation, role=USER, text="and the refund?")
    last = Message.objects.create(
        conversation=conversation,
        role=BOT,
        text="Five days.",
        finish_reason="stop",
        grounding=SHOWN,
    )
    rate(last, 1)

    wide = build(system_turn_tokenizer, max_tokens=4096).train[0]
    narrow = build(system_turn_tokenizer, max_tokens=160).train[0]

    assert len(narrow.prompt_ids) + len(narrow.reply_ids) <= 160 < len(wide.prompt_ids)
    article, question, first = (
        system_turn_tokenizer.encode(text, add_special_tokens=False)
        for text in ("Refunds reach you within 5 days.", "and the refund?", "question number 0")
    )
    # The system turn stays; the oldest turns after it go.
    assert _contains(narrow.prompt_ids, article) and _contains(narrow.prompt_ids, question)
    assert _contains(wide.prompt_ids, first) and not _contains(narrow.prompt_ids, first)


def test_a_rated_decline_is_an_example_from_the_prompt_it_would_have_had(system_turn_tokenizer):
    decline = "Sorry, I can't help with that: I can only answer questions about refunds."
    down = grounded_pair("a", "write me a poem", decline, -1, declined=True)

    (example,) = build(system_turn_tokenizer).train

    context = grounded_turns([{"role": USER, "content": "write me a poem"}], SHOWN)
    assert (example.prompt_ids, example.reply_ids, example.label) == (
        *encode_turn(system_turn_tokenizer, context, decline, max_tokens=256),
        -1,
    )
    assert example.feedback_id == down.pk


def test_unfinished_and_failed_replies_are_neither_examples_nor_context(tokenizer):
    messages = chat(
        "a",
        (USER, "first question", ""),
        (BOT, "half a repl", "error"),
        (USER, "second question", ""),
        (BOT, "", ""),  # a pending row: its worker died mid-generation
        (USER, "third question", ""),
        (BOT, "A finished answer.", "stop"),
    )
    failed, pending, finished = messages[1], messages[3], messages[5]
    rate(failed, -1)
    rate(pending, 1)
    good = rate(finished, 1)

    examples = build(tokenizer)

    assert examples.feedback_ids == [good.pk]
    expected_context = [
        {"role": USER, "content": "first question"},
        {"role": USER, "content": "second question"},
        {"role": USER, "content": "third question"},
    ]
    assert (
        examples.train[0].prompt_ids
        == encode_turn(tokenizer, expected_context, "A finished answer.", max_tokens=256)[0]
    )
    assert usable_feedback(require_approval=False).count() == 1


def test_the_heldout_split_is_stable_and_keeps_a_rows_examples_together(tokenizer):
    for n in range(40):
        rated_pair(f"o{n}", f"q{n}", f"bad {n}", -1, correction=f"good {n}", review="approved")

    first = build(tokenizer, heldout_share=0.3, seed=7)
    again = build(tokenizer, heldout_share=0.3, seed=7)
    other_seed = build(tokenizer, heldout_share=0.3, seed=8)

    heldout = {e.feedback_id for e in first.heldout}
    train = {e.feedback_id for e in first.train}
    assert heldout and train and not heldout & train
    assert 4 <= len(heldout) <= 20  # about 30% of 40
    assert first.counts["heldout"] == len(first.heldout) == 2 * len(heldout)
    assert {e.feedback_id for e in again.heldout} == heldout
    assert {e.feedback_id for e in other_seed.heldout} != heldout
    assert first.data_hash == again.data_hash


def test_counts_and_the_data_hash_describe_the_data(tokenizer):
    rated_pair("a", "hi", "Hello!", 1)
    fixed = rated_pair("b", "refund?", "No.", -1, correction="Within five days.", review="approved")
    rated_pair("c", "refund?", "No.", -1, correction="Ask elsewhere.")  # awaiting review

    examples = build(tokenizer)
    assert examples.counts == {
        "feedback": 3,
        "train": 4,
        "heldout": 0,
        "desirable": 2,
        "undesirable": 2,
        "corrections": 1,
        "corrections_awaiting_review": 1,
        "agent_answers": 0,
        "capped_feedback": 0,
        "network_capped_feedback": 0,
        "largest_network_feedback": 0,
    }
    assert len(examples.data_hash) == 64 and examples.data_hash == build(tokenizer).data_hash

    fixed.correction = "Within seven days."
    fixed.save()
    assert build(tokenizer).data_hash != examples.data_hash


def _contains(haystack: tuple[int, ...], needle: list[int]) -> bool:
    n = len(needle)
    return any(list(haystack[i : i + n]) == needle for i in range(len(haystack) - n + 1))


def test_a_correction_is_learned_only_once_approved_unless_told_otherwise(tokenizer):
    planted = rated_pair("a", "refund?", "Refunds take 5 days.", -1, correction="Ask elsewhere.")
    context = [{"role": USER, "content": "refund?"}]
    taught = encode_turn(tokenizer, context, "Ask elsewhere.", max_tokens=256)[1]

    pending = build(tokenizer)
    as_typed = build(tokenizer, unreviewed_text=True)

    # Pending review: the rating counts, the typed text is not a target.
    assert [(e.reply_ids == taught, e.label) for e in pending.train] == [(False, -1)]
    assert pending.counts["corrections"] == 0
    assert pending.counts["corrections_awaiting_review"] == 1
    assert (taught, 1) in {(e.reply_ids, e.label) for e in as_typed.train}
    planted.review_status = "approved"
    planted.save()
    assert (taught, 1) in {(e.reply_ids, e.label) for e in build(tokenizer).train}


def test_one_networks_sessions_give_at_most_their_share_of_a_run(tokenizer):
    crowd = [rated_pair(f"crowd-{n}", f"q{n}", f"answer {n}", -1) for n in range(6)]
    Conversation.objects.filter(feedback__in=crowd).update(network="net-a")
    others = [rated_pair(f"other-{n}", f"q{n}", f"answer {n}", 1) for n in range(4)]

    # 10 rows: 2 of them would be 2 of 6 used (33%); 1 of the 5 used is 20%.
    examples = build(tokenizer, network_share=0.2)

    used = set(examples.feedback_ids)
    assert {f.pk for f in others} <= used  # no network known: not capped by it
    assert used & {f.pk for f in crowd} == {crowd[5].pk}  # the newest
    assert examples.counts["network_capped_feedback"] == 5
    assert examples.counts["largest_network_feedback"] == 1


@pytest.mark.parametrize(
    ("networks", "share", "quota"),
    [
        (["a"] * 10 + [f"n{i}" for i in range(20)], 0.2, {"a": 5}),  # 5 of the 25 used
        (["a"] * 4 + [f"n{i}" for i in range(8)], 0.2, {"a": 2}),  # 2 of 10
        (["a"] * 6 + [""] * 4, 0.5, {"a": 4}),  # 4 of 8
        (["a"] * 30, 0.2, {"a": 1}),  # one network alone: one row
        (["a"] * 3 + ["b"] * 3, 1.0, {"a": 3, "b": 3}),  # no cap
    ],
)
def test_no_network_gives_more_than_its_share_of_the_rows_used(networks, share, quota):
    from learning.examples import network_quota

    got = network_quota(networks, share)

    assert {network: got[network] for network in quota} == quota
    used = sum(min(networks.count(n), got[n]) for n in got) + networks.count("")
    assert all(count <= max(1, share * used) for count in got.values())
