"""What a reply is generated with, and the engine's refusal: values the engine shares with callers.

Torch-free, so that serving and the chat consumers use them without importing the model code.
"""

from __future__ import annotations

from dataclasses import dataclass


class EngineBusy(Exception):
    """The engine has ENGINE_MAX_QUEUE replies queued or running: a new one is refused at once."""


@dataclass(frozen=True)
class ActiveVersion:
    """The model version a reply is generated with, as the engine needs it (no ORM row)."""

    id: int
    name: str
    checkpoint_path: str
