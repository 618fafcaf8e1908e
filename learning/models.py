"""The checkpoint registry: every model that can answer customers is a ModelVersion."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelVersionQuerySet(models.QuerySet):
    def active(self) -> ModelVersionQuerySet:
        """The version that answers customers: one row at most (a database constraint)."""
        return self.filter(status=ModelVersion.Status.ACTIVE)


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
    adapter_base = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="adapters",
        help_text="A LoRA adapter's frozen base: the checkpoint it is applied to (empty: a full "
        "checkpoint).",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.READY)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    activation_note = models.CharField(max_length=500, blank=True)
    weights_deleted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When its checkpoint was deleted to bound the disk (learning/"
        "checkpoint_pruning.py); such a version can no longer be activated.",
    )

    objects = ModelVersionQuerySet.as_manager()

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


class TrainingRun(models.Model):
    """One pass of the learning loop: feedback → examples → update → gate → (promotion)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Promoted"
        REJECTED = "rejected", "Rejected by the gate"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        IMPORT = "import", "Knowledge-base import"
        OPERATOR = "operator", "Operator"
        COMMAND = "command", "Management command"

    class Kind(models.TextChoices):
        FEEDBACK = "feedback", "Learning from feedback"
        KNOWLEDGE = "knowledge", "Tuning for the knowledge base"

    OPEN_STATUSES = (Status.QUEUED, Status.RUNNING)

    kind = models.CharField(
        max_length=20,
        choices=Kind.choices,
        default=Kind.FEEDBACK,
        help_text="Learning from feedback (a regularized update of the active model), or the "
        "pretrained base tuned for the knowledge base (learning/knowledge_tuning.py).",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    parent = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    anchor = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    result_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    hyperparameters = models.JSONField(default=dict, blank=True)
    example_counts = models.JSONField(default=dict, blank=True)
    data_hash = models.CharField(max_length=64, blank=True)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    loss_history = models.JSONField(default=list, blank=True)
    metrics_before = models.JSONField(default=dict, blank=True)
    metrics_after = models.JSONField(default=dict, blank=True)
    gate_passed = models.BooleanField(null=True, blank=True)
    gate_reasons = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(
        max_length=200, blank=True, help_text="host:pid of the worker process running it."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("operate_learning", "Can retrain, promote and roll back models")]
        constraints = [
            # One open run at a time, in the database: a second trigger cannot queue another.
            models.UniqueConstraint(
                models.Value(1),
                condition=Q(status__in=["queued", "running"]),
                name="at_most_one_open_training_run",
            )
        ]

    def __str__(self) -> str:
        return f"Training run #{self.pk} ({self.get_status_display()})"


class GoldenExample(models.Model):
    """A question with the answer staff expect; a candidate must not get these worse."""

    question = models.TextField()
    expected_answer = models.TextField()
    required_facts = models.JSONField(
        default=list, blank=True, help_text="Short phrases a correct reply must contain."
    )
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.question[:80]
