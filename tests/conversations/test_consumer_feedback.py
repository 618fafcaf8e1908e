"""Rating replies over /ws/chat/: one rating per reply and owner, replaced whole on re-rating."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from conversations.models import Conversation, Feedback, Message
from learning.models import TrainingRun
from tests.conversations.chat_sockets import (
    expect_error,
    open_chat,
    receive,
    still_open,
)

pytestmark = pytest.mark.usefixtures("chat_test")


@database_sync_to_async
def add_exchange(conversation: str, finish_reason: str = "stop") -> tuple[Message, Message]:
    question = Message.objects.create(conversation_id=conversation, role="user", text="hi")
    reply = Message.objects.create(
        conversation_id=conversation, role="assistant", text="hello!", finish_reason=finish_reason
    )
    return question, reply


@database_sync_to_async
def feedback_rows() -> list[Feedback]:
    return list(Feedback.objects.order_by("id"))


async def rate(socket, message_id: int, rating: int, **fields: str) -> dict:
    await socket.send_json_to(
        {"type": "feedback", "message_id": message_id, "rating": rating, **fields}
    )
    return await receive(socket)


async def test_it_stores_a_rating_and_replaces_it_whole_on_re_rating(cookie, staff_user):
    socket, hello = await open_chat(cookie)
    _, reply = await add_exchange(hello["conversation"])

    assert await rate(socket, reply.pk, 1) == {
        "type": "feedback.saved",
        "message_id": reply.pk,
        "rating": 1,
    }
    [up] = await feedback_rows()
    assert (up.rating, up.reason, up.comment, up.correction) == (1, "", "", "")
    assert up.owner_key == f"session:{cookie.split('=', 1)[1]}"
    assert str(up.conversation_id) == hello["conversation"]

    saved = await rate(
        socket, reply.pk, -1, reason="wrong", comment="not true", correction="We ship in 2 days."
    )
    assert saved["rating"] == -1
    [down] = await feedback_rows()
    assert down.pk == up.pk
    assert (down.rating, down.reason, down.comment, down.correction) == (
        -1,
        "wrong",
        "not true",
        "We ship in 2 days.",
    )

    # Staff approved it and a run used it: a new opinion goes back to review, and the run's
    # use sticks (the next run does not learn from the row again unless staff say so).
    run = await database_sync_to_async(TrainingRun.objects.create)(
        trigger="operator", status="succeeded"
    )
    await database_sync_to_async(Feedback.objects.filter(pk=down.pk).update)(
        review_status="approved", reviewer=staff_user, reviewed_at=timezone.now(), used_by_run=run
    )
    assert (await rate(socket, reply.pk, 1))["rating"] == 1
    [again] = await feedback_rows()
    assert again.pk == up.pk
    assert (again.rating, again.reason, again.comment, again.correction) == (1, "", "", "")
    assert (again.review_status, again.reviewer_id, again.reviewed_at, again.used_by_run_id) == (
        "pending",
        None,
        None,
        run.pk,
    )
    await socket.disconnect()


async def test_it_records_the_logged_in_user_as_the_rater(customer_user):
    from tests.conversations.chat_sockets import login_cookie

    cookie = await login_cookie(customer_user)
    socket, hello = await open_chat(cookie)
    _, reply = await add_exchange(hello["conversation"])

    await rate(socket, reply.pk, -1, reason="tone")

    [feedback] = await feedback_rows()
    assert feedback.owner_key == f"user:{customer_user.pk}"
    assert feedback.user_id == customer_user.pk
    await socket.disconnect()


@pytest.mark.parametrize(
    ("fields", "code", "detail"),
    [
        ({"rating": 5}, "invalid", "rating must be 1 or -1"),
        ({"rating": "1"}, "invalid", "rating: Input should be a valid integer"),
        ({"rating": True}, "invalid", "rating: Input should be a valid integer"),
        ({"rating": -1, "reason": "because"}, "invalid", "unknown reason"),
        ({"rating": 1, "reason": "wrong"}, "invalid", "a reason is only allowed with rating -1"),
        ({}, "invalid", "rating is required"),
        (
            {"rating": -1, "comment": "x" * 2001},
            "too_long",
            "comment is longer than 2000 characters",
        ),
        (
            {"rating": -1, "correction": "x" * 2001},
            "too_long",
            "correction is longer than 2000 characters",
        ),
    ],
)
async def test_it_refuses_a_bad_rating(cookie, settings, fields, code, detail):
    settings.CHAT_MAX_COMMENT_CHARS = 2000
    settings.CHAT_MAX_FRAME_BYTES = 65536
    socket, hello = await open_chat(cookie)
    _, reply = await add_exchange(hello["conversation"])

    await socket.send_json_to({"type": "feedback", "message_id": reply.pk, **fields})

    error = await expect_error(socket, code)
    assert error["detail"] == detail
    await still_open(socket)
    assert await feedback_rows() == []
    await socket.disconnect()


async def test_it_refuses_to_rate_a_user_message(cookie):
    socket, hello = await open_chat(cookie)
    question, _ = await add_exchange(hello["conversation"])

    await socket.send_json_to({"type": "feedback", "message_id": question.pk, "rating": 1})

    await expect_error(socket, "not_found")
    await still_open(socket)
    assert await feedback_rows() == []
    await socket.disconnect()


async def test_it_refuses_to_rate_another_conversations_reply(cookie):
    socket, _ = await open_chat(cookie)
    # Another conversation of the very same session: still not this socket's conversation.
    other = await database_sync_to_async(Conversation.objects.create)(
        session_key=cookie.split("=", 1)[1]
    )
    _, foreign_reply = await add_exchange(str(other.pk))

    await socket.send_json_to({"type": "feedback", "message_id": foreign_reply.pk, "rating": -1})

    error = await expect_error(socket, "not_found")
    assert error["detail"] == "No reply with this id in this conversation."
    await still_open(socket)
    assert await feedback_rows() == []
    await socket.disconnect()


async def test_it_refuses_to_rate_a_reply_still_being_written_or_unknown(cookie):
    socket, hello = await open_chat(cookie)
    _, pending = await add_exchange(hello["conversation"], finish_reason="")

    await socket.send_json_to({"type": "feedback", "message_id": pending.pk, "rating": 1})
    await expect_error(socket, "not_found")
    await socket.send_json_to({"type": "feedback", "message_id": pending.pk + 1000, "rating": 1})
    await expect_error(socket, "not_found")
    await still_open(socket)
    assert await feedback_rows() == []
    await socket.disconnect()


async def test_it_rate_limits_a_feedback_flood(cookie, settings):
    settings.CHAT_FEEDBACK_PER_MINUTE = 3
    socket, hello = await open_chat(cookie)
    replies = [(await add_exchange(hello["conversation"]))[1] for _ in range(5)]

    answers = [await rate(socket, reply.pk, 1) for reply in replies]

    assert [a["type"] for a in answers] == ["feedback.saved"] * 3 + ["error"] * 2
    assert {a.get("code") for a in answers[3:]} == {"rate_limited"}
    await still_open(socket)
    assert sorted(f.message_id for f in await feedback_rows()) == [r.pk for r in replies[:3]]
    await socket.disconnect()


async def test_a_rejection_survives_the_same_rating_sent_again(cookie, staff_user):
    from conversations.review import reject_feedback

    socket, hello = await open_chat(cookie)
    _, reply = await add_exchange(hello["conversation"])
    planted = {"reason": "wrong", "correction": "Ask at www.elsewhere.example instead."}
    await rate(socket, reply.pk, -1, **planted)
    [row] = await feedback_rows()
    await database_sync_to_async(reject_feedback)([row.pk], staff_user)

    await rate(socket, reply.pk, -1, **planted)  # the same frame again
    await rate(socket, reply.pk, -1, reason="wrong", correction="Another planted answer.")

    [again] = await feedback_rows()
    assert (again.review_status, again.reviewer_id) == ("rejected", staff_user.pk)
    assert again.correction == "Another planted answer."  # the customer's opinion, kept out
    await socket.disconnect()


async def test_an_approved_rating_sent_again_unchanged_stays_approved(cookie, staff_user):
    from conversations.review import approve_feedback

    socket, hello = await open_chat(cookie)
    _, reply = await add_exchange(hello["conversation"])
    await rate(socket, reply.pk, 1, comment="spot on")
    [row] = await feedback_rows()
    await database_sync_to_async(approve_feedback)([row.pk], staff_user)

    await rate(socket, reply.pk, 1, comment="spot on")

    [again] = await feedback_rows()
    assert (again.review_status, again.reviewer_id) == ("approved", staff_user.pk)
    await socket.disconnect()
