"""Where learning reads the chat's feedback: the one module of ``learning`` that imports
``conversations``.

The customers' ratings and the agents' answers are rows of the chat app (``Feedback``, on a
``Message``); learning reads them as queries and as ``RatedTurn``s free of the ORM, marks the
rows a promoted model learned from, and counts ratings per model version for the admin.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import OuterRef, QuerySet

from conversations.models import Feedback, Message
from conversations.redaction import redact
from conversations.subqueries import count_subquery
from knowledge.profile import business_contact
from knowledge.prompt import as_prompt_role, grounded_turns

FeedbackSet = QuerySet[Feedback]
AGENT_ANSWER = Feedback.Source.AGENT
CUSTOMER_RATING = Feedback.Source.CUSTOMER
# The review statuses an export can narrow to (rejected feedback is never exported).
EXPORTABLE_REVIEW_STATUSES = [
    status for status in Feedback.ReviewStatus.values if status != Feedback.ReviewStatus.REJECTED
]


@dataclass(frozen=True)
class RatedTurn:
    """One usable piece of feedback with its conversation context, free of the ORM."""

    feedback_id: int
    owner_key: str
    context: tuple[dict[str, str], ...]  # what the model saw: grounded when the reply was
    reply: str
    label: int
    correction: str
    source: str = CUSTOMER_RATING
    approved: bool = False  # staff approved the rating (and its correction)
    network: str = ""  # the conversation's network key (conversations.network); "" unknown


def usable_feedback(*, require_approval: bool) -> FeedbackSet:
    """Feedback not yet learned from; never rejected; approved only when review is required.

    Only replies whose generation ended count: a pending or failed reply is partial.
    """
    queryset = Feedback.objects.filter(
        used_by_run__isnull=True, message__finish_reason__in=Message.PROMPTABLE_REASONS
    ).exclude(review_status=Feedback.ReviewStatus.REJECTED)
    if require_approval:
        queryset = queryset.filter(review_status=Feedback.ReviewStatus.APPROVED)
    return queryset


def rated_turns(feedback: FeedbackSet) -> list[RatedTurn]:
    """Load each rated reply with the conversation before it, in two queries; a grounded
    reply's context starts with the system turn of the articles stored with it."""
    rows = list(feedback.select_related("message", "conversation").order_by("-updated_at", "-id"))
    conversation_ids = {row.conversation_id for row in rows}
    history: dict[Any, list[Message]] = defaultdict(list)
    for message in (
        Message.objects.promptable()
        .filter(conversation_id__in=conversation_ids)
        .order_by("created_at", "id")
    ):
        history[message.conversation_id].append(message)
    turns = []
    contact = business_contact()
    for row in rows:
        # Personal data out of what people wrote (customers, agents); what the business
        # publishes (the articles shown, its contact) stays. The bot's replies are the model's.
        keep = [contact, *(str(a.get("text", "")) for a in row.message.grounding or [])]

        before = []
        # An agent's answer follows the question it answers (declines in between are left
        # out); a rated reply, everything before it. Ids are ordered.
        agent_answer = row.source == AGENT_ANSWER and row.answered_question_id is not None
        last = row.answered_question_id if agent_answer else row.message_id - 1
        for message in history[row.conversation_id]:
            if message.pk > last:
                break
            if message.text:
                before.append(
                    {"role": as_prompt_role(message.role), "content": _written(message, keep)}
                )
        turns.append(
            RatedTurn(
                feedback_id=row.pk,
                owner_key=row.owner_key,
                context=tuple(grounded_turns(before, row.message.grounding)),
                reply=_written(row.message, keep),
                label=row.rating,
                correction=redact(row.correction.strip(), keep),
                source=row.source,
                approved=row.review_status == Feedback.ReviewStatus.APPROVED,
                network=row.conversation.network,
            )
        )
    return turns


def _written(message: Message, keep: list[str]) -> str:
    """A message's text for training: redacted where a person wrote it (a customer, an agent);
    the bot's own replies as they are."""
    if message.role == Message.Role.ASSISTANT:
        return message.text
    return redact(message.text, keep)


def feedback_for_export(
    queryset: FeedbackSet | None = None,
    *,
    review_status: str | None = None,
    rating: int | None = None,
    include_used: bool = True,
) -> FeedbackSet:
    """Usable feedback (never rejected, on finished replies), narrowed like the admin's filters."""
    queryset = (
        (queryset if queryset is not None else Feedback.objects.all())
        .filter(message__finish_reason__in=Message.PROMPTABLE_REASONS)
        .exclude(review_status=Feedback.ReviewStatus.REJECTED)
    )
    if review_status:
        queryset = queryset.filter(review_status=review_status)
    if rating is not None:
        queryset = queryset.filter(rating=rating)
    if not include_used:
        queryset = queryset.filter(used_by_run__isnull=True)
    return queryset


def mark_learned(feedback_ids: list[int], run: Any) -> None:
    """Record that ``run``'s promoted model learned from these rows (never used twice)."""
    Feedback.objects.filter(pk__in=feedback_ids).update(used_by_run=run)


def with_rating_counts(versions: QuerySet) -> QuerySet:
    """Annotate each model version with how many of its replies customers rated (``n_rated``),
    and rated up (``n_up``)."""
    ratings = Feedback.objects.filter(
        message__model_version=OuterRef("pk"), source=Feedback.Source.CUSTOMER
    )
    group = "message__model_version"
    return versions.annotate(
        n_rated=count_subquery(ratings, group),
        n_up=count_subquery(ratings.filter(rating=Feedback.Rating.UP), group),
    )


def with_agent_answer_counts(training_runs: QuerySet) -> QuerySet:
    """Annotate each training run with how many agents' answers its promoted model learned
    from (``n_agent_answers``)."""
    agent_answers = Feedback.objects.filter(used_by_run=OuterRef("pk"), source=AGENT_ANSWER)
    return training_runs.annotate(n_agent_answers=count_subquery(agent_answers, "used_by_run"))
