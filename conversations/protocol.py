"""The websocket chat protocol's client frames: decoding, validation and error codes.

See docs/protocol.md (a contract). Every way a frame can be wrong maps to one
`ProtocolError(code, detail)` with a fixed detail string; the services raise the same error for
the refusals they decide (rate limits, a conversation's length, an unknown reply). The consumer
answers it with its `error` frame and keeps the connection open. Limits are read from settings
at validation time, so they follow `override_settings` in tests and the environment in
production.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from django.conf import settings
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from conversations.models import Feedback

ErrorCode = Literal[
    "bad_json",
    "unknown_type",
    "invalid",
    "too_long",
    "not_found",
    "rate_limited",
    "busy",
    "forbidden",
    "conflict",
]

# The protocol's version, sent in the `conversation` frame (docs/protocol.md). 2 added the
# handoff to a person: the `handoff` and `csat` client frames, the `status`, `agent_message`,
# `csat.request` and `csat.saved` server frames, the `forbidden` and `conflict` error codes.
PROTOCOL_VERSION = 2

CLIENT_FRAME_TYPES = frozenset({"user_message", "feedback", "ping", "handoff", "csat"})
# Frames only the staff inbox (/ws/inbox/) accepts; the chat socket answers them `forbidden`.
AGENT_FRAME_TYPES = frozenset({"claim", "agent_message", "hand_back", "close", "transcript"})
INBOX_FRAME_TYPES = AGENT_FRAME_TYPES | {"ping", "inbox.page"}
MAX_CLIENT_ID_CHARS = 64
# Message ids are 64-bit primary keys; a bigger number would overflow the database's integer.
MAX_MESSAGE_ID = 2**63 - 1


class ProtocolError(Exception):
    """A refusal the client can act on; `code` is one of the protocol's error codes."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code: ErrorCode = code
        self.detail = detail

    def as_frame(self) -> dict[str, str]:
        """The `error` frame that answers it."""
        return {"type": "error", "code": self.code, "detail": self.detail}


def decode_frame(
    text_data: str | None,
    bytes_data: bytes | None,
    accepted: frozenset[str] = CLIENT_FRAME_TYPES,
) -> tuple[str, dict[str, Any]]:
    """Turn a raw websocket frame into (type, JSON object), checking its size before parsing.

    Daphne sets no frame-size limit, so the size is checked here, in UTF-8 bytes, before the
    JSON parser sees the frame. `accepted`: the frame types of the socket (the chat's, or the
    inbox's); an agent's frame on the chat socket is `forbidden`.
    """
    if text_data is None:
        raise ProtocolError("invalid", "Binary frames are not supported; send JSON text.")
    limit = settings.CHAT_MAX_FRAME_BYTES
    # A str of n characters takes at most 4n bytes in UTF-8: skip the encoding when it must fit.
    if len(text_data) * 4 > limit and len(text_data.encode("utf-8")) > limit:
        raise ProtocolError("too_long", f"Frame is larger than {limit} bytes.")
    try:
        payload = json.loads(text_data)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_json", "Frame is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise ProtocolError("invalid", "Frame must be a JSON object.")
    frame_type = payload.get("type")
    if not isinstance(frame_type, str):
        raise ProtocolError("unknown_type", "Frame has no string 'type'.")
    if frame_type not in accepted:
        if frame_type in AGENT_FRAME_TYPES:
            raise ProtocolError("forbidden", "Only staff in the inbox can send agent frames.")
        raise ProtocolError("unknown_type", "Unknown frame type.")
    return frame_type, payload


def _optional_text(value: str | None, field: str, limit: int) -> str:
    value = (value or "").strip()
    if len(value) > limit:
        raise PydanticCustomError(
            "too_long",
            "{field} is longer than {limit} characters",
            {"field": field, "limit": limit},
        )
    return value


class UserMessageFrame(BaseModel):
    """`{"type": "user_message", "text": "...", "client_id": "optional idempotency key"}`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["user_message"]
    text: StrictStr
    client_id: StrictStr | None = Field(default="", max_length=MAX_CLIENT_ID_CHARS)

    @field_validator("text")
    @classmethod
    def _text_is_present_and_short(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise PydanticCustomError("invalid", "text must not be empty")
        limit = settings.CHAT_MAX_MESSAGE_CHARS
        if len(value) > limit:
            raise PydanticCustomError(
                "too_long", "text is longer than {limit} characters", {"limit": limit}
            )
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id_or_empty(cls, value: str | None) -> str:
        return (value or "").strip()


class FeedbackFrame(BaseModel):
    """`{"type": "feedback", "message_id", "rating": 1 | -1, "reason", "comment", "correction"}`.

    Absent optional fields become "": a rating always carries its whole set of fields.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["feedback"]
    message_id: StrictInt = Field(ge=1, le=MAX_MESSAGE_ID)
    rating: StrictInt
    reason: StrictStr | None = None
    comment: StrictStr | None = None
    correction: StrictStr | None = None

    @field_validator("rating")
    @classmethod
    def _rating_is_thumb(cls, value: int) -> int:
        if value not in (Feedback.Rating.UP, Feedback.Rating.DOWN):
            raise PydanticCustomError("invalid", "rating must be 1 or -1")
        return value

    @field_validator("reason")
    @classmethod
    def _reason_is_known(cls, value: str | None) -> str:
        value = (value or "").strip()
        if value and value not in Feedback.Reason.values:
            raise PydanticCustomError("invalid", "unknown reason")
        return value

    @field_validator("comment")
    @classmethod
    def _comment_is_short(cls, value: str | None) -> str:
        return _optional_text(value, "comment", settings.CHAT_MAX_COMMENT_CHARS)

    @field_validator("correction")
    @classmethod
    def _correction_is_short(cls, value: str | None) -> str:
        return _optional_text(value, "correction", settings.CHAT_MAX_COMMENT_CHARS)

    @model_validator(mode="after")
    def _reason_only_with_thumbs_down(self) -> FeedbackFrame:
        if self.reason and self.rating != Feedback.Rating.DOWN:
            raise PydanticCustomError("invalid", "a reason is only allowed with rating -1")
        return self


class SatisfactionFrame(BaseModel):
    """`{"type": "csat", "score": 1..5, "comment": "optional"}`: the survey after closing."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["csat"]
    score: StrictInt
    comment: StrictStr | None = None

    @field_validator("score")
    @classmethod
    def _score_is_one_to_five(cls, value: int) -> int:
        if not 1 <= value <= 5:
            raise PydanticCustomError("invalid", "score must be 1 to 5")
        return value

    @field_validator("comment")
    @classmethod
    def _comment_is_short(cls, value: str | None) -> str:
        return _optional_text(value, "comment", settings.CHAT_MAX_COMMENT_CHARS)


class InboxFrame(BaseModel):
    """An agent's action on one conversation: `claim`, `hand_back`, `close`, `transcript`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["claim", "hand_back", "close", "transcript"]
    conversation: StrictStr = Field(max_length=64)


class AgentMessageFrame(InboxFrame):
    """`{"type": "agent_message", "conversation", "text", "client_id": "optional"}`."""

    type: Literal["agent_message"]  # type: ignore[assignment]
    text: StrictStr
    client_id: StrictStr | None = Field(default="", max_length=MAX_CLIENT_ID_CHARS)

    _text_is_present_and_short = field_validator("text")(
        UserMessageFrame._text_is_present_and_short.__func__  # type: ignore[attr-defined]
    )
    _client_id_or_empty = field_validator("client_id")(
        UserMessageFrame._client_id_or_empty.__func__  # type: ignore[attr-defined]
    )


def _error_from_validation(error: ValidationError) -> ProtocolError:
    errors = error.errors(include_url=False, include_input=False)
    too_long = [e for e in errors if e["type"] == "too_long"]
    # Any over-long field makes it `too_long`: the user can shorten it and resend.
    first = too_long[0] if too_long else errors[0]
    field = ".".join(str(part) for part in first["loc"])
    if first["type"] == "missing":
        detail = f"{field} is required"
    elif first["type"] in ("invalid", "too_long"):
        detail = first["msg"]
    else:
        detail = f"{field}: {first['msg']}" if field else first["msg"]
    return ProtocolError("too_long" if too_long else "invalid", detail)


def parse_user_message(payload: dict[str, Any]) -> UserMessageFrame:
    try:
        return UserMessageFrame.model_validate(payload)
    except ValidationError as error:
        raise _error_from_validation(error) from None


def parse_feedback(payload: dict[str, Any]) -> FeedbackFrame:
    try:
        return FeedbackFrame.model_validate(payload)
    except ValidationError as error:
        raise _error_from_validation(error) from None


def parse_satisfaction(payload: dict[str, Any]) -> SatisfactionFrame:
    try:
        return SatisfactionFrame.model_validate(payload)
    except ValidationError as error:
        raise _error_from_validation(error) from None


class InboxPageFrame(BaseModel):
    """`{"type": "inbox.page", "offset": n}`: the queue's rows from the n-th on."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["inbox.page"]
    offset: StrictInt = Field(ge=0, le=1_000_000)


def parse_inbox_frame(
    payload: dict[str, Any],
) -> InboxFrame | AgentMessageFrame | InboxPageFrame:
    model: type[BaseModel] = {
        "agent_message": AgentMessageFrame,
        "inbox.page": InboxPageFrame,
    }.get(payload.get("type"), InboxFrame)
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise _error_from_validation(error) from None
