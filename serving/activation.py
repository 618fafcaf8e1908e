"""How serving reacts to the registry's announcements (``learning.signals``).

Before an activation, an adapter version is loaded on the inference server; once it has
committed, this process forgets the active version it remembered (other processes see the
change within GENERATION_POLL_SECONDS) and the retired adapter's unload is queued
(``serving.served_adapters``). Connected in ``ServingConfig.ready``.
"""

from __future__ import annotations

from typing import Any

from learning.models import ModelVersion
from serving import backends, served_adapters


def load_before_activation(sender: Any, version: ModelVersion, **kwargs: Any) -> str:
    """The remark for the activation note ("" when there is none)."""
    return served_adapters.load_for_activation(version)


def after_activation(
    sender: Any,
    version: ModelVersion,
    retired: ModelVersion | None,
    was_retired: bool = False,
    **kwargs: Any,
) -> None:
    backends.forget_active_version()
    served_adapters.after_activation(version, retired, was_retired=was_retired)
