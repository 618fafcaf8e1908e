"""The knowledge base: the articles staff write, their revisions, and the articles' embeddings.

An article is what staff would answer to a kind of question, with example questions: customers'
wordings of that kind of question, one a line. Its embedding is a float32 matrix in the same
row, one unit vector (the sentence encoder's) per passage: the title and text, then each example
question; ``embedding_count`` says how many. A question is matched against all of them and an
article scores by its best (``knowledge.index``): customers' questions resemble other customers'
questions far more than they resemble the answer, so the example questions carry most of the
matching (bench/knowledge.py --quality measures it). The matrix is stored with the name of the
encoder that made it: vectors from different encoders cannot be compared, so a change of
encoder makes every article "not embedded" until it is embedded again. No vector extension is
needed in the database; the search runs in each web process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

EMBEDDING_DTYPE = np.dtype("<f4")  # float32, little-endian on every machine
EMBEDDING_FIELDS = (
    "embedding",
    "embedding_encoder",
    "embedding_count",
    "embedding_dimension",
    "embedded_at",
)


def question_lines(example_questions: str) -> list[str]:
    """The example questions, one a line: stripped, without blank lines or repeats."""
    lines = (line.strip() for line in example_questions.splitlines())
    return list(dict.fromkeys(line for line in lines if line))


def article_passages(title: str, text: str, example_questions: str) -> list[str]:
    """What is embedded of an article, one vector each: its title and text (not its topic or
    active flag), then each example question."""
    return [f"{title}\n\n{text}", *question_lines(example_questions)]


def embedding_values(vectors: np.ndarray, encoder_name: str, at: datetime) -> dict[str, Any]:
    """The values of EMBEDDING_FIELDS for the (count, dimension) matrix ``vectors``, made by the
    encoder ``encoder_name``."""
    count, dimension = vectors.shape
    return {
        "embedding": np.ascontiguousarray(vectors, dtype=EMBEDDING_DTYPE).tobytes(),
        "embedding_encoder": encoder_name,
        "embedding_count": int(count),
        "embedding_dimension": int(dimension),
        "embedded_at": at,
    }


class KnowledgeArticle(models.Model):
    title = models.CharField(
        max_length=200, help_text="What the article is about, as a customer might put it."
    )
    text = models.TextField(
        help_text="The answer staff would give; the bot is shown it when a question matches."
    )
    example_questions = models.TextField(
        blank=True,
        help_text="Questions this article answers, one a line, worded as customers ask them: "
        "a customer's question is matched against these and the title and text.",
    )
    topic = models.CharField(max_length=100, blank=True, db_index=True)
    is_active = models.BooleanField(
        default=True, help_text="Only active articles are searched and shown to the bot."
    )
    external_id = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="The article's id in the system it was imported from (import_knowledge "
        "matches on it); blank for articles written here.",
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    embedding_encoder = models.CharField(max_length=200, blank=True, editable=False)
    # The embedding's rows: title and text, then each example question (article_passages).
    embedding_count = models.PositiveIntegerField(null=True, blank=True, editable=False)
    embedding_dimension = models.PositiveIntegerField(null=True, blank=True, editable=False)
    # Indexed, as updated_at: each web process polls their maximum (knowledge.index).
    embedded_at = models.DateTimeField(null=True, blank=True, editable=False, db_index=True)

    # The fields an edit is about: a change to any of them keeps the old values as a revision.
    REVISED_FIELDS = ("title", "text", "example_questions", "topic", "is_active")

    class Meta:
        ordering = ["topic", "title", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["external_id"],
                condition=~models.Q(external_id=""),
                name="unique_article_external_id",
            )
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def passages(self) -> list[str]:
        return article_passages(self.title, self.text, self.example_questions)


class ArticleRevision(models.Model):
    """An article as it was before an edit: its content, who wrote that version and when."""

    article = models.ForeignKey(
        KnowledgeArticle, on_delete=models.CASCADE, related_name="revisions"
    )
    title = models.CharField(max_length=200)
    text = models.TextField()
    example_questions = models.TextField(blank=True)
    topic = models.CharField(max_length=100, blank=True)
    is_active = models.BooleanField()
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(help_text="When this version was saved.")
    replaced_at = models.DateTimeField(auto_now_add=True, help_text="When an edit replaced it.")

    class Meta:
        ordering = ["-replaced_at", "-id"]

    def __str__(self) -> str:
        return f"{self.title} (as of {self.updated_at:%Y-%m-%d %H:%M})"


class ArticleProposal(models.Model):
    """A new text for an article, proposed from customers' corrections of replies written from it.

    A correction that contradicts the article the reply was grounded in says that either the
    article is out of date or the customer is wrong; the bot answers from the article, so only
    staff can tell which (``knowledge.proposals``). One proposal per article and proposed text,
    however many corrections say it; accepting one edits the article (with a revision, as any
    edit does).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DISMISSED = "dismissed", "Dismissed"

    article = models.ForeignKey(
        KnowledgeArticle, on_delete=models.CASCADE, related_name="proposals"
    )
    text = models.TextField(help_text="The article's text as the corrections would have it.")
    # sha256 of ``text``: what the uniqueness is on (a long text is too wide for an index).
    text_digest = models.CharField(max_length=64, editable=False)
    based_on = models.TextField(help_text="The article's text when the reply was written from it.")
    feedback = models.ManyToManyField(
        "conversations.Feedback",
        related_name="article_proposals",
        help_text="The ratings whose corrections propose this text.",
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["status", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["article", "text_digest"],
                condition=models.Q(status="pending"),
                name="one_pending_proposal_per_article_and_text",
            )
        ]

    def __str__(self) -> str:
        return f"New text for “{self.article.title}”"


class WordingCandidate(models.Model):
    """A customer's wording of a question an article answered, proposed as one of the article's
    example questions (``knowledge.wordings``).

    Customers word a question in ways the example questions do not; retrieval matches mostly
    against those, so each accepted wording is one more way to find the article. A wording is
    customer text that would change what other customers are shown, so it waits for staff: one
    candidate per article and wording, however many ratings support it.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    class Source(models.TextChoices):
        RATED_UP = "rated_up", "A reply written from the article was rated up"
        AGENT = "agent", "The bot could not answer it; an agent did"
        DECLINED = "declined", "The bot declined it; the customer rated the decline down"

    # None: asked, and not in the knowledge base (staff pick the article, or write one).
    article = models.ForeignKey(
        KnowledgeArticle,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="wording_candidates",
        help_text="The article this wording should find: staff may change it, or pick one "
        "where none was found, before accepting.",
    )
    question = models.TextField(help_text="The customer's question, personal data redacted.")
    # sha256 of the question, lower-cased with its spaces collapsed: the uniqueness is on it.
    question_digest = models.CharField(max_length=64, editable=False)
    source = models.CharField(max_length=10, choices=Source.choices)
    feedback = models.ManyToManyField(
        "conversations.Feedback",
        blank=True,
        related_name="wording_candidates",
        help_text="The ratings (or agents' answers) that support this wording.",
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["status", "article", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["article", "question_digest"],
                condition=models.Q(status="pending"),
                name="one_pending_wording_per_article",
            ),
            models.UniqueConstraint(
                fields=["question_digest"],
                condition=models.Q(status="pending", article__isnull=True),
                name="one_pending_wording_without_article",
            ),
        ]

    def __str__(self) -> str:
        where = f"“{self.article.title}”" if self.article else "no article yet"
        return f"“{self.question}” for {where}"


HEX_COLOUR = RegexValidator(r"^#[0-9a-fA-F]{6}$", "A colour as #rrggbb, e.g. #1f6feb.")


class BusinessProfile(models.Model):
    """Who the bot speaks for, as staff edit it in the admin: one row (``knowledge.profile``).

    Every text that names the business reads it: the chat page and the widget, the grounded
    prompt, the declines and the handoff messages. A field left blank falls back to its setting
    (BUSINESS_*).
    """

    business_name = models.CharField(max_length=200, blank=True)
    assistant_name = models.CharField(
        max_length=100, blank=True, help_text="What the bot calls itself in the chat."
    )
    contact = models.CharField(
        max_length=300, blank=True, help_text="How customers reach a person: e-mail, phone."
    )
    hours = models.CharField(
        max_length=200, blank=True, help_text="When the team answers, told to waiting customers."
    )
    greeting = models.TextField(blank=True, help_text="The chat's first message.")
    helps_with = models.CharField(
        max_length=300,
        blank=True,
        help_text="What the bot helps with, as declines name it; blank: the knowledge base's "
        "topics.",
    )
    colour = models.CharField(
        max_length=7,
        blank=True,
        validators=[HEX_COLOUR],
        help_text="The brand colour of the chat page and the widget, as #rrggbb.",
    )
    min_score_override = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(-1.0), MaxValueValidator(1.0)],
        help_text="Decline below this retrieval score instead of the calibrated threshold; "
        "blank: the calibrated one.",
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "business profile"
        verbose_name_plural = "business profile"

    def __str__(self) -> str:
        return self.business_name or "Business profile"


class ThresholdCalibration(models.Model):
    """The decline threshold measured on the knowledge base (``knowledge.calibration``).

    Each article's example questions, each asked as if it were not stored, against a shipped
    list of off-topic questions: below the threshold the bot declines, so a higher one declines
    more in-scope questions and a lower one answers more off-topic ones. ``curve`` keeps both
    rates at every candidate threshold, for the admin's chart.
    """

    encoder = models.CharField(max_length=200)
    threshold = models.FloatField()
    in_scope_declined = models.FloatField(help_text="Share of example questions declined.")
    off_topic_answered = models.FloatField(help_text="Share of off-topic questions answered.")
    in_scope_count = models.PositiveIntegerField()
    off_topic_count = models.PositiveIntegerField()
    article_count = models.PositiveIntegerField()
    curve = models.JSONField(
        default=list,
        help_text="[threshold, in-scope declined, off-topic answered] at each candidate threshold.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return f"{self.threshold:.3f} ({self.created_at:%Y-%m-%d %H:%M})"
