"""Handing a conversation to a person: waiting, claiming, agents' replies, handing back, closing.

A conversation is `open` (the bot answers), `waiting_for_agent` (the customer asked for a
person, or the bot declined HANDOFF_AFTER_DECLINES times in a row), `with_agent` (an agent
claimed it in the inbox) or `closed`. While it is waiting or with an agent the bot is silent:
the customer's messages are stored and shown in the inbox, and nothing is generated. Every
change of status is one conditional UPDATE (`filter(status=...).update(...)`), so two agents
claiming the same conversation, or an agent closing one the customer is just handing off, can
never both win: the loser gets a `HandoffRefused` it can show.

The consumers (chat and inbox) call these through `database_sync_to_async` and tell the other
side through the channel layer (`conversations.handoff_events`); nothing here sends frames. What
the inbox shows is `conversations.inbox_views`.

Closing a conversation asks the customer the satisfaction question (`conversations.satisfaction`);
an agent's answer to a question the bot could not answer becomes a training example
(`conversations.agent_answers`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from conversations.models import AgentPresence, Conversation, Message
from conversations.protocol import ProtocolError
from knowledge.profile import business_contact, business_hours

Status = Conversation.Status
Role = Message.Role


class HandoffRefused(ProtocolError):
    """An inbox action that cannot be done: someone else claimed it, it is not waiting, ..."""


# --- what the customer is told ---------------------------------------------------------------


def agent_name(user: Any | None) -> str | None:
    """How an agent is shown to customers: their first name, else their username."""
    if user is None:
        return None
    return (getattr(user, "first_name", "") or "").strip() or user.get_username()


def agents_on_duty() -> bool:
    """Whether an agent has the inbox open (pinged within HANDOFF_AGENT_PRESENCE_SECONDS)."""
    since = timezone.now() - timedelta(seconds=settings.HANDOFF_AGENT_PRESENCE_SECONDS)
    return AgentPresence.objects.filter(last_seen__gte=since).exists()


def status_detail(status: str, agent: str | None, *, on_duty: bool) -> str:
    """The sentence a customer reads about who answers now."""
    if status == Status.WAITING_FOR_AGENT:
        if on_duty:
            return "A person from our team will answer you here shortly."
        return (
            "A person from our team will answer you here. Nobody is online right now: our "
            f"hours are {business_hours()}, and we'll reply as soon as we're back. You "
            f"can also reach us at {business_contact()}."
        )
    if status == Status.WITH_AGENT:
        return f"{agent or 'A person from our team'} is answering you now."
    if status == Status.CLOSED:
        return "This conversation is closed. Write again at any time to reopen it."
    return "The assistant is answering again."


def status_frame(conversation_id: uuid.UUID) -> dict[str, Any]:
    """The protocol's `status` frame for a conversation as it is now."""
    conversation = Conversation.objects.select_related("agent").get(pk=conversation_id)
    name = agent_name(conversation.agent) if conversation.status == Status.WITH_AGENT else None
    on_duty = conversation.status != Status.WAITING_FOR_AGENT or agents_on_duty()
    return {
        "type": "status",
        "status": conversation.status,
        "agent": name,
        "detail": status_detail(conversation.status, name, on_duty=on_duty),
    }


# --- the customer's side ---------------------------------------------------------------------


def do_request_handoff(conversation_id: uuid.UUID, reason: str) -> bool:
    """Put an open (or closed) conversation in the queue for a person; False when it already
    waits or is with an agent, when handoff is off (HANDOFF_ENABLED), or when
    HANDOFF_MAX_WAITING_PER_NETWORK conversations of its network already wait."""
    if not settings.HANDOFF_ENABLED:
        return False
    network = Conversation.objects.filter(pk=conversation_id).values_list("network", flat=True)
    network = network.first() or ""
    if network and (
        Conversation.objects.filter(network=network, status=Status.WAITING_FOR_AGENT).count()
        >= settings.HANDOFF_MAX_WAITING_PER_NETWORK
    ):
        return False  # one network's sessions cannot fill the queue; it is given the contact
    return bool(
        Conversation.objects.filter(
            pk=conversation_id, status__in=(Status.OPEN, Status.CLOSED)
        ).update(
            status=Status.WAITING_FOR_AGENT,
            handoff_reason=reason,
            handed_off_at=timezone.now(),
            agent=None,
            closed_at=None,
            updated_at=timezone.now(),
        )
    )


def declined_too_often(conversation_id: uuid.UUID) -> bool:
    """Whether the bot's last HANDOFF_AFTER_DECLINES replies in a row were declines."""
    needed = settings.HANDOFF_AFTER_DECLINES
    last = list(
        Message.objects.finished()
        .filter(conversation_id=conversation_id, role__in=(Role.ASSISTANT, Role.AGENT))
        .order_by("-created_at", "-id")
        .values_list("declined", flat=True)[:needed]
    )
    return len(last) == needed and all(last)


# --- the agents' side ------------------------------------------------------------------------


ANSWER_CUSTOMERS = "conversations.answer_customers"
SUPERVISE_INBOX = "conversations.supervise_inbox"


def check_agent(user_id: int | None) -> Any:
    """The active staff user `user_id` allowed to answer customers (the `answer_customers`
    permission, not every staff user), or `forbidden`. Read afresh on every call: staff status
    or the permission can be taken away while an inbox socket is open, so every frame and every
    message the socket receives checks it again."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True, is_staff=True).first()
    if user is None or not user.has_perm(ANSWER_CUSTOMERS):
        raise HandoffRefused(
            "forbidden", "Only staff allowed to answer customers (a permission) can do this."
        )
    return user


def conversation_or_refuse(conversation_id: str | uuid.UUID) -> Conversation:
    """The conversation with this id (a string from a frame), or `not_found`."""
    try:
        pk = uuid.UUID(str(conversation_id))
    except ValueError:
        raise HandoffRefused("not_found", "No such conversation.") from None
    conversation = Conversation.objects.select_related("agent").filter(pk=pk).first()
    if conversation is None:
        raise HandoffRefused("not_found", "No such conversation.")
    return conversation


def do_claim(conversation_id: str | uuid.UUID, user_id: int) -> Conversation:
    """The agent takes a waiting conversation; exactly one of two racing agents wins."""
    agent = check_agent(user_id)
    conversation = conversation_or_refuse(conversation_id)
    claimed = Conversation.objects.filter(
        pk=conversation.pk, status=Status.WAITING_FOR_AGENT
    ).update(status=Status.WITH_AGENT, agent=agent, updated_at=timezone.now())
    if not claimed:
        conversation.refresh_from_db()
        if conversation.status == Status.WITH_AGENT and conversation.agent_id == agent.pk:
            return conversation  # claimed twice by the same agent: nothing to do
        who = agent_name(conversation.agent) if conversation.agent else None
        raise HandoffRefused(
            "conflict",
            f"{who} has already claimed this conversation."
            if who
            else "This conversation is not waiting for a person any more.",
        )
    conversation.refresh_from_db()
    return conversation


def _check_assigned(conversation: Conversation, agent: Any) -> None:
    if conversation.status != Status.WITH_AGENT:
        raise HandoffRefused("conflict", "Claim the conversation before answering.")
    if conversation.agent_id != agent.pk:
        raise HandoffRefused(
            "conflict", f"{agent_name(conversation.agent)} is answering this conversation."
        )


@dataclass(frozen=True)
class AgentReply:
    """An agent's message as stored; `repeat`: its client_id was seen before (a resend)."""

    conversation_id: uuid.UUID
    message_id: int
    text: str
    agent: str
    client_id: str
    repeat: bool = False

    def customer_frame(self) -> dict[str, Any]:
        return {
            "type": "agent_message",
            "id": self.message_id,
            "text": self.text,
            "agent": self.agent,
        }


def do_post_agent_message(
    conversation_id: str | uuid.UUID, user_id: int, text: str, client_id: str = ""
) -> AgentReply:
    """Store the assigned agent's reply (role `agent`, author = the agent)."""
    agent = check_agent(user_id)
    conversation = conversation_or_refuse(conversation_id)
    name = agent_name(agent) or ""
    if client_id:
        existing = Message.objects.filter(
            conversation=conversation, client_id=client_id, role=Role.AGENT
        ).first()
        if existing is not None:
            return AgentReply(conversation.pk, existing.pk, existing.text, name, client_id, True)
    _check_assigned(conversation, agent)
    if Message.objects.filter(conversation=conversation).count() + 1 > (
        settings.CHAT_MAX_CONVERSATION_MESSAGES
    ):
        raise HandoffRefused("too_long", "This conversation has reached its message limit.")
    with transaction.atomic():
        message = Message.objects.create(
            conversation=conversation,
            role=Role.AGENT,
            author=agent,
            text=text,
            client_id=client_id,
            finish_reason=Message.FinishReason.STOP,
        )
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
    return AgentReply(conversation.pk, message.pk, text, name, client_id)


def _release(
    conversation_id: str | uuid.UUID, user_id: int, status: str, **values: Any
) -> Conversation:
    """Hand back or close: the assigned agent may, and any agent while nobody has claimed it."""
    agent = check_agent(user_id)
    conversation = conversation_or_refuse(conversation_id)
    owned = Q(agent_id=agent.pk) if conversation.agent_id else Q(agent__isnull=True)
    changed = (
        Conversation.objects.filter(owned, pk=conversation.pk, status=conversation.status)
        .exclude(status__in=(Status.OPEN, Status.CLOSED))
        .update(status=status, agent=None, updated_at=timezone.now(), **values)
    )
    if not changed:
        conversation.refresh_from_db()
        if conversation.status in (Status.OPEN, Status.CLOSED):
            raise HandoffRefused("conflict", "This conversation is no longer with a person.")
        raise HandoffRefused(
            "conflict", f"{agent_name(conversation.agent)} is answering this conversation."
        )
    conversation.refresh_from_db()
    return conversation


def do_hand_back(conversation_id: str | uuid.UUID, user_id: int) -> Conversation:
    """The bot answers again."""
    return _release(conversation_id, user_id, Status.OPEN)


def do_close(conversation_id: str | uuid.UUID, user_id: int) -> Conversation:
    """The conversation ends; the customer is asked the satisfaction question."""
    return _release(conversation_id, user_id, Status.CLOSED, closed_at=timezone.now())


def do_release_claim(conversation_id: str | uuid.UUID, supervisor: Any) -> Conversation:
    """A supervisor (`supervise_inbox`) puts a conversation another agent claimed back in the
    queue: the agent left, or someone else should answer."""
    if not supervisor.is_active or not supervisor.has_perm(SUPERVISE_INBOX):
        raise HandoffRefused("forbidden", "Only supervisors can release another agent's claim.")
    return _back_to_the_queue(conversation_or_refuse(conversation_id))


def do_reassign(conversation_id: str | uuid.UUID, supervisor: Any, agent_id: int) -> Conversation:
    """A supervisor gives a waiting or claimed conversation to another agent (one allowed to
    answer customers): it is theirs, as if they had claimed it."""
    if not supervisor.is_active or not supervisor.has_perm(SUPERVISE_INBOX):
        raise HandoffRefused("forbidden", "Only supervisors can reassign a conversation.")
    agent = check_agent(agent_id)
    conversation = conversation_or_refuse(conversation_id)
    changed = Conversation.objects.filter(
        pk=conversation.pk, status__in=Conversation.HANDED_OFF
    ).update(status=Status.WITH_AGENT, agent=agent, updated_at=timezone.now())
    if not changed:
        raise HandoffRefused("conflict", "This conversation is no longer with a person.")
    conversation.refresh_from_db()
    return conversation


def eligible_agents() -> QuerySet:
    """The users a conversation can be given to: active staff allowed to answer customers."""
    from django.contrib.auth.models import Permission

    app_label, codename = ANSWER_CUSTOMERS.split(".")
    permission = Permission.objects.filter(
        codename=codename, content_type__app_label=app_label
    ).first()
    allowed = Q(is_superuser=True)
    if permission is not None:
        allowed |= Q(user_permissions=permission) | Q(groups__permissions=permission)
    return (
        get_user_model()
        .objects.filter(allowed, is_active=True, is_staff=True)
        .distinct()
        .order_by("first_name", "username")
    )


def release_abandoned_claims(*, now: datetime | None = None) -> list[uuid.UUID]:
    """Claims whose agent has had no inbox open for HANDOFF_CLAIM_RELEASE_MINUTES go back to the
    queue (a periodic task); returns the conversations released."""
    now = now or timezone.now()
    away_since = now - timedelta(minutes=settings.HANDOFF_CLAIM_RELEASE_MINUTES)
    present = AgentPresence.objects.filter(last_seen__gte=away_since).values("user_id")
    abandoned = Conversation.objects.filter(
        status=Status.WITH_AGENT, updated_at__lt=away_since
    ).exclude(agent_id__in=present)
    return [_back_to_the_queue(c).pk for c in abandoned]


def _back_to_the_queue(conversation: Conversation) -> Conversation:
    changed = Conversation.objects.filter(pk=conversation.pk, status=Status.WITH_AGENT).update(
        status=Status.WAITING_FOR_AGENT, agent=None, updated_at=timezone.now()
    )
    if not changed:
        raise HandoffRefused("conflict", "Nobody has claimed this conversation.")
    conversation.refresh_from_db()
    return conversation


# --- presence --------------------------------------------------------------------------------


def do_agent_seen(user_id: int, channel_name: str) -> None:
    """The agent's inbox socket is open (on connect and on every ping). Rows a dead process
    left behind count no longer than HANDOFF_AGENT_PRESENCE_SECONDS and are deleted after a day."""
    now = timezone.now()
    AgentPresence.objects.update_or_create(
        channel_name=channel_name, defaults={"user_id": user_id, "last_seen": now}
    )
    AgentPresence.objects.filter(last_seen__lt=now - timedelta(days=1)).delete()


def do_agent_left(channel_name: str) -> None:
    AgentPresence.objects.filter(channel_name=channel_name).delete()
