"""The checkpoint registry: every model that can answer customers is a ModelVersion."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        READY = "ready", "Ready"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"
        REJECTED = "rejected", "Rejected"

    class Source(models.TextChoices):
        STARTER = "starter", "Starter model (built locally)"
        PRETRAINED = "pretrained", "Pretrained (hub id or local path)"
        TRAINED = "trained", "Fine-tuned from feedback"

    name = models.CharField(max_length=100, unique=True)
    checkpoint_path = models.CharField(
        max_length=500, help_text="Directory with safetensors weights and tokenizer, or a hub id."
    )
    source = models.CharField(max_length=20, choices=Source.choices, default=Source.STARTER)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    anchor = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="anchored",
        help_text="θ₀ of the regularized update: the base this version is kept close to.",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.READY)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    activation_note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status="active"),
                name="at_most_one_active_model_version",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_base(self) -> bool:
        return self.parent_id is None
