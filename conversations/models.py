"""Conversations, their messages, and the customers' ratings of the bot's replies."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Conversation(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "With the bot"
        WAITING_FOR_AGENT = "waiting_for_agent", "Waiting for a person"
        WITH_AGENT = "with_agent", "With a person"
        CLOSED = "closed", "Closed"

    class HandoffReason(models.TextChoices):
        ASKED = "asked", "The customer asked for a person"
        DECLINES = "declines", "The bot declined twice in a row"

    # Statuses in which the bot stays silent: a person has (or will) take over.
    HANDED_OFF = (Status.WAITING_FOR_AGENT, Status.WITH_AGENT)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Owner: the logged-in user if there is one, otherwise the browser session.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="conversations",
    )
    session_key = models.CharField(max_length=40, blank=True, db_index=True)
    network = models.CharField(
        max_length=32,
        blank=True,
        db_index=True,
        help_text="A keyed hash of the network the conversation started from (conversations/"
        "network.py), never the address: per-network caps.",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_conversations",
        help_text="The person who claimed the conversation in the inbox.",
    )
    handoff_reason = models.CharField(max_length=10, choices=HandoffReason.choices, blank=True)
    handed_off_at = models.DateTimeField(
        null=True, blank=True, help_text="When the conversation last started waiting for a person."
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["status", "handed_off_at"])]
        permissions = [
            ("answer_customers", "Can answer customers in the staff inbox"),
            ("supervise_inbox", "Can release conversations other agents claimed"),
        ]

    def __str__(self) -> str:
        return f"Conversation {str(self.id)[:8]}"


class MessageQuerySet(models.QuerySet):
    def finished(self) -> MessageQuerySet:
        """User messages and the replies whose generation has ended: what is shown and rated.

        A pending reply (`finish_reason=""`) has no text and no final version yet; a failed
        one keeps its partial text and is shown.
        """
        return self.filter(Q(role=Message.Role.USER) | ~Q(finish_reason=""))

    def promptable(self) -> MessageQuerySet:
        """Messages that may go back into the model's prompt: a failed reply is partial."""
        return self.filter(
            Q(role=Message.Role.USER) | Q(finish_reason__in=Message.PROMPTABLE_REASONS)
        )


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "Customer"
        ASSISTANT = "assistant", "Bot"
        AGENT = "agent", "Agent"

    class FinishReason(models.TextChoices):
        STOP = "stop", "End of turn"
        LENGTH = "length", "Token limit"
        DISCONNECTED = "disconnected", "Client went away"
        ERROR = "error", "Generation failed"

    # Replies that ran to their end: the end of the turn or the token limit.
    COMPLETE_REASONS = (FinishReason.STOP, FinishReason.LENGTH)
    # Replies whose text is whole enough to prompt with and learn from: a pending ("") or
    # failed reply is partial; one cut short by a disconnect is what the customer saw.
    PROMPTABLE_REASONS = (*COMPLETE_REASONS, FinishReason.DISCONNECTED)

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField()
    client_id = models.CharField(max_length=64, blank=True)
    model_version = models.ForeignKey(
        "learning.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="messages",
        help_text="The model version that wrote this reply (bot messages only).",
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The person who wrote this reply (agent messages only).",
    )
    finish_reason = models.CharField(max_length=20, choices=FinishReason.choices, blank=True)
    time_to_first_token_ms = models.FloatField(null=True, blank=True)
    generation_ms = models.FloatField(null=True, blank=True)
    token_count = models.PositiveIntegerField(null=True, blank=True)
    declined = models.BooleanField(
        default=False,
        help_text="The bot declined instead of answering: no article matched the question well "
        "enough, or the customer asked for a person (bot messages only).",
    )
    grounding = models.JSONField(
        default=list,
        blank=True,
        help_text="The knowledge-base articles the reply was written from, as they were shown: "
        '[{"id", "title", "text", "score"}], best first; training rebuilds the prompt from them.',
    )
    guard = models.CharField(
        max_length=20,
        choices=[
            ("repetition", "Repeated itself"),
            ("model_decline", "Declined in its own words"),
            ("unsupported", "Said what its articles do not"),
        ],
        blank=True,
        help_text="Why the faithfulness guard replaced what the model wrote (knowledge/"
        "faithfulness.py); blank: sent as written.",
    )
    generated_text = models.TextField(
        blank=True, help_text="What the model wrote, when the guard replaced it."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=~Q(client_id=""),
                name="unique_client_id_per_conversation",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()}: {self.text[:60]}"


class Feedback(models.Model):
    class Rating(models.IntegerChoices):
        UP = 1, "Thumbs up"
        DOWN = -1, "Thumbs down"

    class Reason(models.TextChoices):
        WRONG = "wrong", "Wrong or outdated information"
        NOT_ANSWERED = "not_answered", "Didn't answer my question"
        INCOMPLETE = "incomplete", "Incomplete"
        UNCLEAR = "unclear", "Hard to understand"
        TONE = "tone", "Rude or unfriendly"
        OTHER = "other", "Something else"

    class Source(models.TextChoices):
        CUSTOMER = "customer", "Customer's rating"
        AGENT = "agent", "Agent's answer"

    class ReviewStatus(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="feedback"
    )
    # The rater; by construction the conversation's owner.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    owner_key = models.CharField(
        max_length=64, help_text="'user:<id>' or 'session:<key>'; one rating per message per owner."
    )
    rating = models.SmallIntegerField(choices=Rating.choices)
    source = models.CharField(
        max_length=10,
        choices=Source.choices,
        default=Source.CUSTOMER,
        help_text="A customer's rating of a bot reply, or an agent's answer to a question the "
        "bot could not answer (then `message` is the agent's reply, rated up, and `question` "
        "the customer's message it answers, `answered_question`).",
    )
    answered_question = models.ForeignKey(
        Message,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Agent answers only: the customer's question the answer is for.",
    )
    reason = models.CharField(max_length=20, choices=Reason.choices, blank=True)
    comment = models.TextField(blank=True)
    correction = models.TextField(
        blank=True, help_text="A better answer, written by the customer or by staff."
    )
    review_status = models.CharField(
        max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.PENDING
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    used_by_run = models.ForeignKey(
        "learning.TrainingRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="used_feedback",
        help_text="The training run whose promoted model learned from this feedback.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name_plural = "feedback"
        constraints = [
            models.UniqueConstraint(
                fields=["message", "owner_key"], name="one_feedback_per_message_per_owner"
            ),
            models.CheckConstraint(
                condition=Q(rating__in=[1, -1]), name="feedback_rating_is_plus_or_minus_one"
            ),
        ]
        indexes = [
            models.Index(fields=["review_status", "-updated_at"]),
            models.Index(fields=["rating", "-updated_at"]),
            models.Index(fields=["reason"]),
            models.Index(fields=["-created_at"]),
            models.Index(fields=["source"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_rating_display()} on message {self.message_id}"


class Satisfaction(models.Model):
    """The customer's answer to the one-question survey after a conversation was closed."""

    conversation = models.OneToOneField(
        Conversation, on_delete=models.CASCADE, related_name="satisfaction"
    )
    score = models.PositiveSmallIntegerField(help_text="1 (very unhappy) to 5 (very happy).")
    comment = models.TextField(blank=True)
    model_version = models.ForeignKey(
        "learning.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The version that wrote the conversation's last bot reply.",
    )
    handed_off = models.BooleanField(
        default=False, help_text="A person took part in the conversation."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "satisfaction answer"
        constraints = [
            models.CheckConstraint(
                condition=Q(score__gte=1, score__lte=5), name="satisfaction_score_1_to_5"
            )
        ]

    def __str__(self) -> str:
        return f"{self.score}/5 for {self.conversation}"


class AgentPresence(models.Model):
    """An open inbox socket: who is on duty now, across web processes.

    A row per socket, deleted when it closes; a process that dies leaves its rows, which
    count only while `last_seen` is recent (the inbox page pings).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    channel_name = models.CharField(max_length=200, unique=True)
    last_seen = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.user} on {self.channel_name}"
