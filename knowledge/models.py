"""The knowledge base: the articles staff write, their revisions, and the articles' embeddings.

An article is what staff would answer to a kind of question. Its embedding (the sentence
encoder's vector of its title and text) lives in the same row as float32 bytes, with the name
of the encoder that made it: vectors from different encoders cannot be compared, so a change of
encoder makes every article "not embedded" until it is embedded again. No vector extension is
needed in the database; the search runs in each web process (`knowledge.index`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.db import models

EMBEDDING_DTYPE = np.dtype("<f4")  # float32, little-endian on every machine
EMBEDDING_FIELDS = ("embedding", "embedding_encoder", "embedding_dimension", "embedded_at")


def article_passage(title: str, text: str) -> str:
    """What is embedded of an article: its title and text (not its topic or active flag)."""
    return f"{title}\n\n{text}"


def embedding_values(vector: np.ndarray, encoder_name: str, at: datetime) -> dict[str, Any]:
    """The values of EMBEDDING_FIELDS for ``vector``, made by the encoder ``encoder_name``."""
    return {
        "embedding": np.ascontiguousarray(vector, dtype=EMBEDDING_DTYPE).tobytes(),
        "embedding_encoder": encoder_name,
        "embedding_dimension": int(vector.shape[-1]),
        "embedded_at": at,
    }


class KnowledgeArticle(models.Model):
    title = models.CharField(
        max_length=200, help_text="What the article is about, as a customer might put it."
    )
    text = models.TextField(
        help_text="The answer staff would give; the bot is shown it when a question matches."
    )
    topic = models.CharField(max_length=100, blank=True, db_index=True)
    is_active = models.BooleanField(
        default=True, help_text="Only active articles are searched and shown to the bot."
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    embedding_encoder = models.CharField(max_length=200, blank=True, editable=False)
    embedding_dimension = models.PositiveIntegerField(null=True, blank=True, editable=False)
    # Indexed, as updated_at: each web process polls their maximum (knowledge.index).
    embedded_at = models.DateTimeField(null=True, blank=True, editable=False, db_index=True)

    # The fields an edit is about: a change to any of them keeps the old values as a revision.
    REVISED_FIELDS = ("title", "text", "topic", "is_active")

    class Meta:
        ordering = ["topic", "title", "id"]

    def __str__(self) -> str:
        return self.title

    @property
    def passage(self) -> str:
        return article_passage(self.title, self.text)


class ArticleRevision(models.Model):
    """An article as it was before an edit: its content, who wrote that version and when."""

    article = models.ForeignKey(
        KnowledgeArticle, on_delete=models.CASCADE, related_name="revisions"
    )
    title = models.CharField(max_length=200)
    text = models.TextField()
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
