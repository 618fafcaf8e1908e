"""A customer's data: exported on request, erased on request, deleted after the retention period.

A customer is a logged-in user or an anonymous browser session (``Customer``), found from any
of their conversations. ``customer_data`` is everything the chat stored about them, as JSON;
``erase_customer`` deletes it: their conversations with every message and rating, and the
article proposals and candidate wordings only their ratings made. Erased rows are gone, so no
later run, export, proposal or wording can use them; what was already learned from them cannot
be unlearned by deleting rows, so the erasure names the model versions trained on their
feedback, for an operator to retrain without them (or roll back).
``delete_expired_conversations`` applies CHAT_RETENTION_DAYS the same way, daily
(django-celery-beat).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from conversations.models import Conversation, Feedback, Message
from knowledge.models import ArticleProposal, WordingCandidate


@dataclass(frozen=True)
class Customer:
    """A logged-in user (``user_id``) or an anonymous browser session (``session_key``)."""

    user_id: int | None = None
    session_key: str = ""

    @classmethod
    def of(cls, conversation: Conversation) -> Customer:
        if conversation.user_id is not None:
            return cls(user_id=conversation.user_id)
        return cls(session_key=conversation.session_key)

    def __str__(self) -> str:
        return (
            f"user #{self.user_id}" if self.user_id is not None else f"session {self.session_key}"
        )

    @property
    def owner_key(self) -> str:
        """How their ratings name them (``Feedback.owner_key``)."""
        if self.user_id is not None:
            return f"user:{self.user_id}"
        return f"session:{self.session_key}"

    def conversations(self) -> QuerySet[Conversation]:
        if self.user_id is not None:
            return Conversation.objects.filter(user_id=self.user_id)
        if not self.session_key:
            return Conversation.objects.none()
        return Conversation.objects.filter(user__isnull=True, session_key=self.session_key)


def customer_of_conversation(conversation_id: str | uuid.UUID) -> Customer | None:
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    return None if conversation is None else Customer.of(conversation)


def _feedback(customer: Customer) -> QuerySet[Feedback]:
    return Feedback.objects.filter(
        Q(conversation__in=customer.conversations()) | Q(owner_key=customer.owner_key)
    )


def customer_data(customer: Customer) -> dict[str, Any]:
    """Everything the chat stored about ``customer``, JSON-ready."""
    conversations = []
    for conversation in customer.conversations().order_by("created_at"):
        messages = Message.objects.filter(conversation=conversation).order_by("created_at", "id")
        ratings = Feedback.objects.filter(conversation=conversation).order_by("created_at", "id")
        conversations.append(
            {
                "id": str(conversation.pk),
                "created_at": conversation.created_at.isoformat(),
                "status": conversation.status,
                "messages": [
                    {
                        "id": m.pk,
                        "role": m.role,
                        "text": m.text,
                        "created_at": m.created_at.isoformat(),
                    }
                    for m in messages
                ],
                "ratings": [
                    {
                        "message_id": f.message_id,
                        "rating": f.rating,
                        "reason": f.reason,
                        "comment": f.comment,
                        "correction": f.correction,
                        "created_at": f.created_at.isoformat(),
                    }
                    for f in ratings
                ],
            }
        )
    return {
        "customer": str(customer),
        "exported_at": timezone.now().isoformat(),
        "conversations": conversations,
    }


@dataclass
class Erasure:
    conversations: int = 0
    messages: int = 0
    ratings: int = 0
    proposals: int = 0
    # Versions trained on the erased ratings (promoted or not): retrain or roll back without them.
    trained_versions: list[str] = field(default_factory=list)


def erase_customer(customer: Customer) -> Erasure:
    """Delete ``customer``'s conversations, messages, ratings and the proposals only their
    corrections made; returns what went and the versions trained on their ratings."""
    return _erase(customer.conversations(), _feedback(customer))


def delete_expired_conversations(*, now: datetime | None = None) -> Erasure:
    """Delete the conversations nobody wrote in for CHAT_RETENTION_DAYS (0: keep for ever)."""
    days = settings.CHAT_RETENTION_DAYS
    if days <= 0:
        return Erasure()
    cutoff = (now or timezone.now()) - timedelta(days=days)
    expired = Conversation.objects.filter(updated_at__lt=cutoff).exclude(
        messages__created_at__gte=cutoff
    )
    return _erase(expired, Feedback.objects.filter(conversation__in=expired))


def _erase(conversations: QuerySet[Conversation], ratings: QuerySet[Feedback]) -> Erasure:
    with transaction.atomic():
        conversation_ids = list(conversations.values_list("pk", flat=True))
        rating_ids = list(ratings.values_list("pk", flat=True))
        trained = sorted(
            set(
                Feedback.objects.filter(
                    pk__in=rating_ids, used_by_run__result_version__isnull=False
                ).values_list("used_by_run__result_version__name", flat=True)
            )
        )
        # Proposals whose every supporting correction is erased: nobody else proposes them.
        touched = ArticleProposal.objects.exclude(status=ArticleProposal.Status.ACCEPTED).filter(
            feedback__in=rating_ids
        )
        theirs = [
            proposal.pk
            for proposal in touched.distinct()
            if not proposal.feedback.exclude(pk__in=rating_ids).exists()
        ]
        proposals = ArticleProposal.objects.filter(pk__in=theirs)
        # Candidate wordings only they supported (staff's accepted ones are article text now).
        wordings = [
            candidate.pk
            for candidate in WordingCandidate.objects.exclude(
                status=WordingCandidate.Status.ACCEPTED
            )
            .filter(feedback__in=rating_ids)
            .distinct()
            if not candidate.feedback.exclude(pk__in=rating_ids).exists()
        ]
        erasure = Erasure(
            conversations=len(conversation_ids),
            messages=Message.objects.filter(conversation_id__in=conversation_ids).count(),
            ratings=len(rating_ids),
            proposals=proposals.count(),
            trained_versions=trained,
        )
        proposals.delete()
        WordingCandidate.objects.filter(pk__in=wordings).delete()
        Feedback.objects.filter(pk__in=rating_ids).delete()
        Conversation.objects.filter(pk__in=conversation_ids).delete()
    return erasure
