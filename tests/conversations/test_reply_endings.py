"""How a reply ends: finished, kept as failed with its partial text, or deleted.

Over /ws/chat/ with the real engine failing for real (a checkpoint that cannot be loaded, a
forward pass that raises mid-reply), and `services.do_end_reply`'s rules on their own.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from channels.db import database_sync_to_async

from conversations import services
from conversations.models import Conversation, Message
from knowledge import answering
from knowledge.demo.corpus import load_corpus
from learning.models import ModelVersion
from learning.versions import activate_version, register_version
from serving.backends import forget_active_version
from tests.conversations.chat_sockets import (
    open_chat,
    receive,
    still_open,
)

pytestmark = pytest.mark.usefixtures("chat_test")

UNAVAILABLE = {
    "type": "error",
    "code": "busy",
    "detail": "The assistant is unavailable right now; please try again later.",
}


@database_sync_to_async
def messages_of(conversation: str) -> list[Message]:
    return list(Message.objects.filter(conversation_id=conversation).order_by("id"))


def unloadable_checkpoint(damage: str, tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A checkpoint directory with nothing in it, or one whose weights file is garbage."""
    path = tmp_path / f"{damage}-checkpoint"
    if damage == "empty":
        path.mkdir()
    else:
        shutil.copytree(tiny_checkpoint, path)
        (path / "model.safetensors").write_bytes(b"these are not safetensors")
    return path


@database_sync_to_async
def activate_checkpoint(path: Path) -> ModelVersion:
    version = register_version(path.name, str(path), ModelVersion.Source.STARTER)
    version = activate_version(version, note="test")
    forget_active_version()
    return version


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info]


@pytest.mark.parametrize("damage", ["empty", "corrupted"])
async def test_it_answers_busy_when_the_active_checkpoint_cannot_be_loaded(
    cookie, damage, tiny_checkpoint, tmp_path, caplog
):
    await activate_checkpoint(unloadable_checkpoint(damage, tiny_checkpoint, tmp_path))
    socket, hello = await open_chat(cookie)

    with caplog.at_level(logging.INFO):
        await socket.send_json_to({"type": "user_message", "text": "where is my order?"})
        saved = await receive(socket)
        start = await receive(socket)
        error = await receive(socket)

    assert saved["type"] == "user_message.saved"
    assert start["type"] == "bot_message.start"
    assert error == UNAVAILABLE
    await still_open(socket)
    # The question is kept; the reply that never got a word is gone.
    assert [(m.pk, m.role, m.text) for m in await messages_of(hello["conversation"])] == [
        (saved["id"], "user", "where is my order?")
    ]
    # An expected failure: one warning line that says why, and no traceback anywhere.
    assert tracebacks(caplog) == []
    [warning] = [r for r in caplog.records if r.name == "conversations.replying"]
    assert warning.levelno == logging.WARNING
    assert f"reply {start['id']} failed: Cannot load checkpoint" in warning.getMessage()
    await socket.disconnect()


async def test_it_keeps_the_text_produced_before_a_forward_pass_failed(
    cookie, active_model_version, forward_pass_breaks_at_step_3, caplog
):
    question = load_corpus().intents[0].questions[0]  # the tiny model answers it at length
    socket, hello = await open_chat(cookie)

    with caplog.at_level(logging.INFO):
        await socket.send_json_to({"type": "user_message", "text": question})
        assert (await receive(socket))["type"] == "user_message.saved"
        start = await receive(socket)
        deltas = []
        while (frame := await receive(socket))["type"] == "bot_message.delta":
            deltas.append(frame["text"])

    assert frame == UNAVAILABLE
    await still_open(socket)
    reply = (await messages_of(hello["conversation"]))[-1]
    assert reply.pk == start["id"]
    assert reply.text and reply.text == "".join(deltas)
    assert (reply.finish_reason, reply.model_version_id) == ("error", active_model_version.pk)
    assert reply.token_count == 3  # the prefill's token and two steps'
    # The engine logged the failed forward pass once, with its traceback; the consumer only
    # says which reply it cost.
    assert [r.name for r in tracebacks(caplog)] == ["serving.engine"]
    [warning] = [r for r in caplog.records if r.name == "conversations.replying"]
    assert warning.levelno == logging.WARNING
    assert warning.getMessage() == f"reply {reply.pk} failed: Generation failed: device lost"
    await socket.disconnect()


# --- do_end_reply's rules -------------------------------------------------------------------


@pytest.fixture
def pending_reply(db) -> Message:
    conversation = Conversation.objects.create(session_key="ending")
    Message.objects.create(conversation=conversation, role="user", text="shipping?")
    return Message.objects.create(
        conversation=conversation, role="assistant", text="", finish_reason=""
    )


@pytest.fixture
def model_version(db) -> ModelVersion:
    return register_version("v1", "/nowhere", ModelVersion.Source.STARTER)


def end_reply(reply: Message, text: str, finish_reason: str, version: ModelVersion):
    return services.do_end_reply(
        reply.pk,
        text=text,
        finish_reason=finish_reason,
        model_version_id=version.pk,
        token_count=4,
        time_to_first_token_ms=12.5,
        generation_ms=40.0,
    )


@pytest.mark.parametrize("finish_reason", ["stop", "length", "disconnected"])
def test_it_keeps_an_ended_reply_as_finished(pending_reply, model_version, finish_reason):
    ending = end_reply(pending_reply, "We ship", finish_reason, model_version)

    assert ending is services.ReplyEnding.FINISHED
    reply = Message.objects.get(pk=pending_reply.pk)
    assert (reply.text, reply.finish_reason, reply.model_version_id) == (
        "We ship",
        finish_reason,
        model_version.pk,
    )
    assert (reply.token_count, reply.time_to_first_token_ms, reply.generation_ms) == (4, 12.5, 40)


def test_it_keeps_the_partial_text_of_a_failed_reply(pending_reply, model_version):
    ending = end_reply(pending_reply, "We sh", "error", model_version)

    assert ending is services.ReplyEnding.FAILED
    reply = Message.objects.get(pk=pending_reply.pk)
    assert (reply.text, reply.finish_reason, reply.model_version_id) == (
        "We sh",
        "error",
        model_version.pk,
    )
    # Shown in the history, never prompted with.
    assert services.prompt_turns(reply.conversation_id) == [
        {"role": "user", "content": "shipping?"}
    ]


@pytest.mark.parametrize("finish_reason", ["error", "disconnected"])
def test_it_deletes_a_reply_that_ended_without_text(pending_reply, model_version, finish_reason):
    ending = end_reply(pending_reply, "", finish_reason, model_version)

    assert ending is services.ReplyEnding.DELETED
    assert not Message.objects.filter(pk=pending_reply.pk).exists()
    assert Message.objects.filter(conversation_id=pending_reply.conversation_id).count() == 1


def test_it_deletes_a_reply_that_failed_before_any_version_answered(pending_reply):
    ending = services.do_end_reply(
        pending_reply.pk, text="", finish_reason="error", model_version_id=None
    )

    assert ending is services.ReplyEnding.DELETED
    assert not Message.objects.filter(pk=pending_reply.pk).exists()


@pytest.mark.parametrize(
    ("text", "declined"),
    [
        (answering.DECLINE_OFF_TOPIC.format(topics="orders", contact="us"), True),
        (answering.DECLINE_PERSON_ASKED.format(topics="orders", contact="us"), True),
        ("Sorry, I can't help with that: I can only answer questions about", True),  # cut short
        ("Sorry, the parcel is late: DHL takes 2-4 days.", False),
        ("Of course! Returns are free within 30 days.", False),
    ],
)
def test_a_reply_the_model_wrote_as_a_decline_is_recorded_as_declined(
    pending_reply, model_version, text, declined
):
    end_reply(pending_reply, text, "stop", model_version)

    assert Message.objects.get(pk=pending_reply.pk).declined is declined
