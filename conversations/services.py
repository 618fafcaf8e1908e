"""Chat actions: who owns a conversation, posting a message, storing a reply, rating it.

The chat (`conversations.replying`, the consumer) calls these through
`database_sync_to_async`; they hold the rules.
`check_*` functions validate and authorize, `do_*` functions change state in one transaction.
Failures a client can act on raise `conversations.protocol.ProtocolError` with one of the
protocol's error codes.

How a bot message gets its id before it exists
----------------------------------------------
`bot_message.start` must carry the reply's id, so the assistant row is inserted together with
the user's message, *pending*: empty text and `finish_reason=""`. When generation ends the
row is filled in one UPDATE (text, model version, finish reason, timings). Ids are therefore
stable and ordered (the reply's id is greater than its question's), and a reply is never
half-written in the database. Pending rows are left out of the history, of the prompt, of
ratings and of the admin (`Message.objects.finished()`).

`do_end_reply` ends every reply, and holds the rules: a generation that fails keeps the text
produced so far with `finish_reason="error"`, or deletes the row when nothing was produced, so
no empty bubble is ever shown. The same holds for a reply the engine refused (`busy`, its queue
is full: the question stays stored, the empty row goes) and for one whose client went away
before a token was produced; a reply cut short by a disconnect keeps its text with
`finish_reason="disconnected"`. A process that dies mid-generation leaves a pending row behind,
invisible everywhere that uses `finished()`.

Grounded replies and declines
-----------------------------
Before each reply the consumer retrieves the knowledge-base articles for the question
(`knowledge.retrieval.retrieve`) and `decide_reply` says what to do with them. With no
knowledge base (retrieval disabled) the bot answers from the conversation alone, as it did
before there was one. Otherwise it declines when the customer asks for a person
(`knowledge.person_request`) or when the best article scores below KNOWLEDGE_MIN_SCORE:
no model runs, the reply is a fixed text that says what the bot can help with and how to reach
the team (BUSINESS_CONTACT), sent with the same frames as any reply and stored with
`declined=True` (`do_decline_reply`). Else the model answers from a prompt that starts with the
articles (`serving.chat_template.grounded_turns`). Either way the reply stores the articles it
was shown (`Message.grounding`), so staff see why it said what it said, and training rebuilds
the same prompt.

Handoff to a person
-------------------
With HANDOFF_ENABLED a person-request decline, or the HANDOFF_AFTER_DECLINES-th decline in a
row, puts the conversation in the queue for a person (`conversations.handoff`). While it waits
or is with an agent, `do_post_user_message` stores the customer's message without a pending
reply: the bot is silent. A message to a closed conversation reopens it with the bot. In
prompts an agent's message is an assistant turn: the bot continues what the person said.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from conversations import wording_candidates
from conversations.handoff import agent_name
from conversations.models import Conversation, Feedback, Message
from conversations.protocol import ProtocolError
from knowledge.answering import ReplyPlan, is_decline
from knowledge.prompt import as_prompt_role

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.contrib.sessions.backends.base import SessionBase

Role = Message.Role


class ConversationNotFound(Exception):
    pass


class ConversationForbidden(Exception):
    pass


@dataclass(frozen=True)
class Owner:
    """Who is chatting: a logged-in user, or else an anonymous browser session."""

    user_id: int | None
    session_key: str
    network: str = ""  # conversations.network.network_key of the connection

    @property
    def key(self) -> str:
        """The rater's identity on Feedback.owner_key."""
        return f"user:{self.user_id}" if self.user_id is not None else f"session:{self.session_key}"

    def conversations(self) -> Q:
        """Filter for Conversation rows this owner may use."""
        if self.user_id is not None:
            return Q(user_id=self.user_id)
        return Q(user__isnull=True, session_key=self.session_key)

    def owns(self, conversation: Conversation) -> bool:
        if conversation.user_id is not None:
            return conversation.user_id == self.user_id
        return self.user_id is None and conversation.session_key == self.session_key


def resolve_owner(
    user: AbstractBaseUser | AnonymousUser | None, session: SessionBase, network: str = ""
) -> Owner:
    """The owner of a connection; gives the session a key (a stored row) if it has none yet."""
    if user is not None and user.is_authenticated:
        return Owner(user_id=user.pk, session_key=session.session_key or "", network=network)
    # Reading the session loads it, which drops a cookie's key that is not in the store.
    session.get("_chat")
    if not session.session_key:
        session.save()
    return Owner(user_id=None, session_key=session.session_key, network=network)


def do_open_conversation(owner: Owner, conversation_id: str | None) -> Conversation:
    """Resume the owner's conversation `conversation_id`, or start a new one when it is None.

    Raises ConversationNotFound for an unknown or malformed id and ConversationForbidden for
    somebody else's conversation.
    """
    if conversation_id is None:
        if owner.user_id is not None:
            return Conversation.objects.create(user_id=owner.user_id, network=owner.network)
        return Conversation.objects.create(session_key=owner.session_key, network=owner.network)
    try:
        pk = uuid.UUID(conversation_id)
    except ValueError:
        raise ConversationNotFound(conversation_id) from None
    conversation = Conversation.objects.filter(pk=pk).first()
    if conversation is None:
        raise ConversationNotFound(conversation_id)
    if not owner.owns(conversation):
        raise ConversationForbidden(conversation_id)
    return conversation


def conversation_history(conversation_id: uuid.UUID, owner: Owner) -> list[dict[str, Any]]:
    """The `messages` of the `conversation` frame: finished messages with the owner's ratings;
    an agent's message also names the agent (`"agent"`)."""
    ratings = dict(
        Feedback.objects.filter(
            message__conversation_id=conversation_id, owner_key=owner.key
        ).values_list("message_id", "rating")
    )
    messages = (
        Message.objects.finished()
        .filter(conversation_id=conversation_id)
        .order_by("created_at", "id")
        .select_related("author")
    )
    history = []
    for message in messages:
        entry: dict[str, Any] = {
            "id": message.pk,
            "role": message.role,
            "text": message.text,
            "rating": ratings.get(message.pk) if message.role == Role.ASSISTANT else None,
        }
        if message.role == Role.AGENT:
            entry["agent"] = agent_name(message.author)
        history.append(entry)
    return history


@dataclass(frozen=True)
class PostedMessage:
    """A user message stored, and the reply to write (None when the message was a repeat, or
    when a person answers: `handed_off`). `reopened`: the message reopened a closed
    conversation."""

    user_message_id: int
    client_id: str
    bot_message_id: int | None
    turns: list[dict[str, str]]
    handed_off: bool = False
    reopened: bool = False


def check_message_rate(owner: Owner) -> None:
    """At most CHAT_MESSAGES_PER_MINUTE user messages per owner, and
    CHAT_MESSAGES_PER_MINUTE_PER_NETWORK per network, across connections and processes.

    Counted in the database; two messages racing past the check together may both pass,
    which is fine for a flood guard.
    """
    since = timezone.now() - timedelta(seconds=60)
    recent = Message.objects.filter(
        role=Role.USER,
        created_at__gte=since,
        conversation__in=Conversation.objects.filter(owner.conversations()),
    ).count()
    if recent >= settings.CHAT_MESSAGES_PER_MINUTE:
        raise ProtocolError("rate_limited", "Too many messages; wait a minute and try again.")
    if not owner.network:
        return
    # Sessions cost nothing: one network's sessions together have a cap of their own.
    from_network = Message.objects.filter(
        role=Role.USER, created_at__gte=since, conversation__network=owner.network
    ).count()
    if from_network >= settings.CHAT_MESSAGES_PER_MINUTE_PER_NETWORK:
        raise ProtocolError(
            "rate_limited", "Too many messages from your network; wait a minute and try again."
        )


def check_conversation_length(conversation_id: uuid.UUID) -> None:
    limit = settings.CHAT_MAX_CONVERSATION_MESSAGES
    # The question and its reply both count.
    if Message.objects.filter(conversation_id=conversation_id).count() + 2 > limit:
        raise ProtocolError(
            "too_long",
            f"This conversation has reached its limit of {limit} messages; start a new one.",
        )


def _existing_message(conversation_id: uuid.UUID, client_id: str) -> PostedMessage | None:
    if not client_id:
        return None
    pk = (
        Message.objects.filter(conversation_id=conversation_id, client_id=client_id)
        .values_list("id", flat=True)
        .first()
    )
    return None if pk is None else PostedMessage(pk, client_id, None, [])


def prompt_turns(conversation_id: uuid.UUID) -> list[dict[str, str]]:
    """The conversation so far for the engine, oldest first (the engine cuts from the left)."""
    rows = (
        Message.objects.promptable()
        .filter(conversation_id=conversation_id)
        .order_by("created_at", "id")
        .values_list("role", "text")
    )
    return [{"role": as_prompt_role(role), "content": text} for role, text in rows]


def do_post_user_message(
    conversation_id: uuid.UUID, owner: Owner, text: str, client_id: str = ""
) -> PostedMessage:
    """Store the user's message and a pending reply row; returns the prompt for the reply.

    A `client_id` already used in this conversation is acknowledged with the stored message's
    id and asks for no new reply (a client retrying after a lost acknowledgement).
    """
    existing = _existing_message(conversation_id, client_id)
    if existing is not None:
        return existing
    check_message_rate(owner)
    check_conversation_length(conversation_id)
    try:
        with transaction.atomic():
            # Locks the row: a claim or a close waits for the message, then sees it.
            conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
            reopened = conversation.status == Conversation.Status.CLOSED
            handed_off = conversation.status in Conversation.HANDED_OFF
            question = Message.objects.create(
                conversation_id=conversation_id, role=Role.USER, text=text, client_id=client_id
            )
            if handed_off:
                reply = None
            else:
                reply = Message.objects.create(
                    conversation_id=conversation_id, role=Role.ASSISTANT, text="", finish_reason=""
                )
            changes: dict[str, Any] = {"updated_at": timezone.now()}
            if reopened:
                changes.update(status=Conversation.Status.OPEN, closed_at=None)
            Conversation.objects.filter(pk=conversation_id).update(**changes)
    except IntegrityError:
        # Two connections sent the same client_id at once: the other one stored it.
        existing = _existing_message(conversation_id, client_id)
        if existing is None:
            raise
        return existing
    if reply is None:
        return PostedMessage(question.pk, client_id, None, [], handed_off=True)
    turns = prompt_turns(conversation_id)
    return PostedMessage(question.pk, client_id, reply.pk, turns, reopened=reopened)


class ReplyEnding(enum.Enum):
    """What `do_end_reply` did with a reply's row."""

    FINISHED = "finished"  # kept, and shown, prompted with and rateable like any reply
    FAILED = "failed"  # kept with its partial text and finish reason "error"
    DELETED = "deleted"  # nothing was produced: the empty row is gone


def do_end_reply(
    bot_message_id: int,
    *,
    text: str,
    finish_reason: str,
    model_version_id: int | None,
    token_count: int | None = None,
    time_to_first_token_ms: float | None = None,
    generation_ms: float | None = None,
    grounding: list[dict[str, Any]] | None = None,
    declined: bool = False,
    guard: str = "",
    generated_text: str = "",
) -> ReplyEnding:
    """Fill in the pending reply row once its generation has ended, however it ended.

    `finish_reason` is the engine's (stop, length, disconnected, error). A reply that failed
    or whose client went away before any text was produced is deleted; a failed one with text
    keeps it as an error. Counts and timings are None when the reply ended before the engine
    took it (no active version, the engine busy, an unexpected failure). `grounding` is the
    articles the reply was written from (ReplyPlan.grounding). A reply that the model wrote as
    a decline is recorded as declined, as the rules' declines are. `guard` says why the
    faithfulness guard replaced `generated_text`, what the model wrote, by `text`.
    """
    reply = Message.objects.filter(pk=bot_message_id, role=Role.ASSISTANT, finish_reason="")
    failed = finish_reason == Message.FinishReason.ERROR
    if not text and (failed or finish_reason == Message.FinishReason.DISCONNECTED):
        reply.delete()
        return ReplyEnding.DELETED
    reply.update(
        text=text,
        model_version_id=model_version_id,
        finish_reason=finish_reason,
        token_count=token_count,
        time_to_first_token_ms=time_to_first_token_ms,
        generation_ms=generation_ms,
        grounding=grounding or [],
        declined=declined or is_decline(text),
        guard=guard,
        generated_text=generated_text,
    )
    return ReplyEnding.FAILED if failed else ReplyEnding.FINISHED


def do_decline_reply(bot_message_id: int, plan: ReplyPlan) -> ReplyEnding:
    """End the pending reply with the plan's decline: a whole reply that no model wrote."""
    return do_end_reply(
        bot_message_id,
        text=plan.decline_text,
        finish_reason=Message.FinishReason.STOP,
        model_version_id=None,
        grounding=plan.grounding,
        declined=True,
    )


def _rateable_message(conversation_id: uuid.UUID, message_id: int) -> Message:
    message = (
        Message.objects.finished()
        .filter(pk=message_id, conversation_id=conversation_id, role=Role.ASSISTANT)
        .first()
    )
    if message is None:
        raise ProtocolError("not_found", "No reply with this id in this conversation.")
    return message


def do_rate_message(
    conversation_id: uuid.UUID,
    owner: Owner,
    message_id: int,
    *,
    rating: int,
    reason: str = "",
    comment: str = "",
    correction: str = "",
) -> Feedback:
    """Store the owner's rating of a reply of this conversation, replacing an earlier one.

    A re-rating replaces the rating with all of its fields (an absent reason, comment or
    correction becomes empty). Staff's review sticks (issue 21): a rejected rating stays
    rejected, and one a run learned from is not learned from again (``used_by_run`` stays) until
    staff say so (``conversations.review.use_again``). An approved rating whose opinion changed
    goes back to review: staff approved the old text, not the new one.
    """
    message = _rateable_message(conversation_id, message_id)
    opinion = {"rating": rating, "reason": reason, "comment": comment, "correction": correction}
    with transaction.atomic():
        feedback = (
            Feedback.objects.select_for_update()
            .filter(message=message, owner_key=owner.key)
            .first()
        )
        if feedback is None:
            # update_or_create retries a create that lost a race as an update.
            feedback, _ = Feedback.objects.update_or_create(
                message=message,
                owner_key=owner.key,
                defaults={"conversation_id": conversation_id, "user_id": owner.user_id, **opinion},
            )
        else:
            _change_opinion(feedback, opinion, owner)
        # The wording the rating supports (or no longer does) for the article it rates.
        wording_candidates.do_follow_rating(feedback)
    return feedback


def _change_opinion(feedback: Feedback, opinion: dict[str, Any], owner: Owner) -> None:
    changed = any(getattr(feedback, field) != value for field, value in opinion.items())
    for field, value in opinion.items():
        setattr(feedback, field, value)
    feedback.user_id = owner.user_id
    if changed and feedback.review_status == Feedback.ReviewStatus.APPROVED:
        feedback.review_status = Feedback.ReviewStatus.PENDING
        feedback.reviewer, feedback.reviewed_at = None, None
    feedback.save(
        update_fields=[*opinion, "user", "review_status", "reviewer", "reviewed_at", "updated_at"]
    )
