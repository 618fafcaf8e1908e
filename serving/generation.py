"""What a reply is generated with, how it ended, and the engine's refusal: values every
generation backend (the in-process engine, a remote server) shares with its callers.

Torch-free, so that serving and the chat consumers use them without importing the model code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol


class EngineBusy(Exception):
    """The engine has GENERATION_ENGINE_MAX_QUEUE replies queued or running, or the generation
    server refused the request (HTTP 429/503): a new reply is refused at once."""


@dataclass(frozen=True)
class ActiveVersion:
    """The model version a reply is generated with, as the engine needs it (no ORM row)."""

    id: int
    name: str
    checkpoint_path: str


# How a reply ended; the chat stores it on the message as is.
FinishReason = Literal["stop", "length", "disconnected", "error"]


@dataclass(frozen=True)
class ReplyResult:
    """How a reply ended: the whole text, and its finish reason, counts and timings.

    A failed generation (the checkpoint cannot be loaded, a prompt cannot be built, a forward
    pass raises) is reported here and only here: ``finish_reason`` is ``"error"``, ``error``
    says why, and ``text`` holds what was produced before the failure. The stream does not
    raise for it. A failure is one of the ways a reply ends, like a disconnect, and every
    ending is stored the same way (``conversations.services.do_end_reply``), so one value
    carries them all, and a reader of the stream has one place to look. Every backend's
    stream ends with one.
    """

    text: str
    model_version_id: int
    finish_reason: FinishReason
    token_count: int
    time_to_first_token_ms: float
    generation_ms: float
    # Why generation failed (finish reason "error"), for the log; None otherwise.
    error: str | None = None


class GenerationStream(Protocol):
    """One reply being generated: an async iterator of text deltas (never empty) that ends,
    however the reply ended, with ``result`` set."""

    @property
    def result(self) -> ReplyResult: ...

    async def open(self) -> bool:
        """Return once the request was accepted: True, or False when the stream has already
        ended (the server could not be reached: ``result`` says why); raise EngineBusy when
        the server refused it as busy."""

    def cancel(self) -> None:
        """The customer went away: stop generating (the stream still ends with a result)."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def __anext__(self) -> str: ...


class GenerationBackend(Protocol):
    """Where replies come from: the in-process engine or a remote server (GENERATION_BACKEND)."""

    def stream_reply(
        self, version: ActiveVersion, turns: list[dict[str, str]]
    ) -> GenerationStream: ...
