"""Handing a conversation to a person, over real websockets: the customer's chat socket and
the staff inbox socket on the real ASGI application and channel layer (Redis in CI).

The bot hands off when the customer asks (the button's `handoff` frame, or in words) or after
two declines in a row, then stays silent; an agent claims the conversation in the inbox (one
of two racing agents wins), answers, hands back or closes; the customer is asked the
satisfaction question once.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from conversations.models import Conversation, Feedback, Message, Satisfaction
from tests.agents import allow_answering
from tests.conversations.chat_sockets import (
    chat_turn,
    expect_error,
    inbox_socket,
    login_cookie,
    new_session_cookie,
    open_chat,
    open_inbox,
    receive,
    receive_until,
    still_open,
)
from tests.conversations.retrieval_stubs import SHIPPING, found, low

pytestmark = pytest.mark.usefixtures("chat_test")


@pytest.fixture(autouse=True)
def handoff_settings(settings):
    settings.HANDOFF_ENABLED = True
    settings.HANDOFF_AFTER_DECLINES = 2
    settings.KNOWLEDGE_MIN_SCORE = 0.45
    settings.BUSINESS_HOURS = "Mon-Fri 9-17"


@pytest.fixture
def agent_user(django_user_model):
    return allow_answering(
        django_user_model.objects.create_user(
            username="anna", first_name="Anna", password="agent-pass-123", is_staff=True
        )
    )


@pytest.fixture
def second_agent(django_user_model):
    return allow_answering(
        django_user_model.objects.create_user(
            username="ben", first_name="Ben", password="agent-pass-123", is_staff=True
        )
    )


@database_sync_to_async
def conversation_row(pk: str) -> Conversation:
    return Conversation.objects.select_related("agent").get(pk=pk)


@database_sync_to_async
def messages_of(pk: str) -> list[tuple[str, str]]:
    return list(
        Message.objects.filter(conversation_id=pk).order_by("id").values_list("role", "text")
    )


async def waiting_conversation() -> tuple:
    """A customer who pressed "Talk to a person": (socket, conversation id)."""
    socket, hello = await open_chat(await new_session_cookie())
    await socket.send_json_to({"type": "handoff"})
    status = await receive(socket)
    assert status["type"] == "status" and status["status"] == "waiting_for_agent", status
    return socket, hello["conversation"]


async def claimed(agent_cookie: str, customer, conversation: str):
    """The agent opens the inbox and claims `conversation`; the customer hears who answers."""
    inbox, _ = await open_inbox(agent_cookie)
    await inbox.send_json_to({"type": "claim", "conversation": conversation})
    transcript = await receive_until(inbox, "transcript")
    assert transcript["conversation"]["status"] == "with_agent"
    status = await receive(customer)
    assert status["type"] == "status" and status["status"] == "with_agent", status
    return inbox


# --- the customer asks, the bot hands off ----------------------------------------------------


async def test_the_button_queues_the_conversation_and_says_when_the_team_is_there():
    socket, conversation = await waiting_conversation()

    row = await conversation_row(conversation)
    assert (row.status, row.handoff_reason) == ("waiting_for_agent", "asked")
    assert row.handed_off_at is not None
    await socket.send_json_to({"type": "handoff"})  # pressed again: told again, nothing changes
    again = await receive(socket)
    assert again["status"] == "waiting_for_agent"
    assert "Mon-Fri 9-17" in again["detail"]  # nobody has the inbox open: the team's hours
    await socket.disconnect()


async def test_with_an_agent_on_duty_the_customer_is_not_told_the_hours(agent_user):
    inbox, _ = await open_inbox(await login_cookie(agent_user))

    socket, _ = await waiting_conversation()
    await socket.send_json_to({"type": "handoff"})
    status = await receive(socket)

    assert "Mon-Fri 9-17" not in status["detail"]
    assert "shortly" in status["detail"]
    await socket.disconnect()
    await inbox.disconnect()


async def test_asking_for_a_person_in_words_hands_off_after_the_decline(
    retrieved, active_model_version
):
    retrieved["answer"] = found(SHIPPING)
    socket, hello = await open_chat(await new_session_cookie())

    turn = await chat_turn(socket, "Can I talk to a human please?")
    status = await receive(socket)

    assert turn["end"]["text"].startswith("Of course: I'm passing you to a person")
    assert status["type"] == "status" and status["status"] == "waiting_for_agent"
    row = await conversation_row(hello["conversation"])
    assert row.handoff_reason == "asked"
    await socket.disconnect()


async def test_two_declines_in_a_row_hand_off_and_one_does_not(retrieved, active_model_version):
    retrieved["answer"] = found(low(SHIPPING, 0.1))
    socket, hello = await open_chat(await new_session_cookie())

    await chat_turn(socket, "what's the weather")
    assert await socket.receive_nothing(timeout=0.3)  # one decline: still the bot's
    assert (await conversation_row(hello["conversation"])).status == "open"
    await chat_turn(socket, "tell me a joke")
    status = await receive(socket)

    assert status["status"] == "waiting_for_agent"
    assert (await conversation_row(hello["conversation"])).handoff_reason == "declines"
    await socket.disconnect()


async def test_an_answer_between_two_declines_resets_the_count(retrieved, active_model_version):
    socket, hello = await open_chat(await new_session_cookie())
    retrieved["answer"] = found(low(SHIPPING, 0.1))
    await chat_turn(socket, "what's the weather")
    retrieved["answer"] = found(SHIPPING)
    await chat_turn(socket, "how much is shipping?")
    retrieved["answer"] = found(low(SHIPPING, 0.1))
    await chat_turn(socket, "tell me a joke")

    assert await socket.receive_nothing(timeout=0.3)
    assert (await conversation_row(hello["conversation"])).status == "open"
    await socket.disconnect()


async def test_with_handoff_off_the_button_only_names_the_contact(settings):
    settings.HANDOFF_ENABLED = False
    settings.BUSINESS_CONTACT = "help@shop.example"
    socket, hello = await open_chat(await new_session_cookie())

    await socket.send_json_to({"type": "handoff"})
    status = await receive(socket)

    assert status["status"] == "open" and "help@shop.example" in status["detail"]
    assert (await conversation_row(hello["conversation"])).status == "open"
    await socket.disconnect()


# --- a person answers ------------------------------------------------------------------------


async def test_the_bot_is_silent_while_the_conversation_waits(retrieved, active_model_version):
    retrieved["answer"] = found(SHIPPING)
    socket, conversation = await waiting_conversation()

    await socket.send_json_to({"type": "user_message", "text": "how much is shipping?"})
    saved = await receive(socket)

    assert saved["type"] == "user_message.saved"
    assert await socket.receive_nothing(timeout=0.5)
    assert await messages_of(conversation) == [("user", "how much is shipping?")]
    assert retrieved["questions"] == []  # not even retrieval ran
    await socket.disconnect()


async def test_a_waiting_conversation_appears_in_an_open_inbox_with_the_customers_messages(
    agent_user,
):
    inbox, hello = await open_inbox(await login_cookie(agent_user))
    assert hello["conversations"] == []
    assert hello["agent"] == {"id": agent_user.pk, "name": "Anna"}

    socket, conversation = await waiting_conversation()
    updated = await receive_until(inbox, "conversation.updated")
    await socket.send_json_to({"type": "user_message", "text": "my parcel is lost"})
    message = await receive_until(inbox, "message")

    assert updated["conversation"]["id"] == conversation
    assert updated["conversation"]["status"] == "waiting_for_agent"
    assert updated["conversation"]["reason"] == "asked"
    assert message["conversation"] == conversation
    assert (message["message"]["role"], message["message"]["text"]) == ("user", "my parcel is lost")
    await socket.disconnect()
    await inbox.disconnect()


async def test_the_inbox_lists_waiting_and_claimed_conversations_longest_waiting_first(
    agent_user,
):
    first, first_id = await waiting_conversation()
    second, second_id = await waiting_conversation()
    inbox = await claimed(await login_cookie(agent_user), second, second_id)
    await inbox.disconnect()

    again, hello = await open_inbox(await login_cookie(agent_user))

    listed = [(row["id"], row["status"], row["agent"]) for row in hello["conversations"]]
    assert listed == [(first_id, "waiting_for_agent", None), (second_id, "with_agent", "Anna")]
    for socket in (first, second, again):
        await socket.disconnect()


async def test_the_inbox_sends_a_page_at_a_time_and_the_next_on_request(agent_user, settings):
    settings.HANDOFF_INBOX_PAGE_SIZE = 2
    customers = [await waiting_conversation() for _ in range(5)]
    ids = [conversation for _, conversation in customers]

    inbox, hello = await open_inbox(await login_cookie(agent_user))
    await inbox.send_json_to({"type": "inbox.page", "offset": 2})
    second = await receive_until(inbox, "inbox.page")
    await inbox.send_json_to({"type": "inbox.page", "offset": 4})
    last = await receive_until(inbox, "inbox.page")

    assert [row["id"] for row in hello["conversations"]] == ids[:2]  # longest waiting first
    assert hello["total"] == second["total"] == last["total"] == 5
    assert [row["id"] for row in second["conversations"]] == ids[2:4]
    assert [row["id"] for row in last["conversations"]] == ids[4:]
    await inbox.send_json_to({"type": "inbox.page", "offset": -1})
    await expect_error(inbox, "invalid")
    await still_open(inbox)
    for socket, _ in customers:
        await socket.disconnect()
    await inbox.disconnect()


async def test_an_agents_reply_reaches_the_customer_at_once_and_is_stored(agent_user):
    customer, conversation = await waiting_conversation()
    inbox = await claimed(await login_cookie(agent_user), customer, conversation)

    await inbox.send_json_to(
        {
            "type": "agent_message",
            "conversation": conversation,
            "text": "Hi, I'm Anna.",
            "client_id": "a-1",
        }
    )
    delivered = await receive(customer)
    saved = await receive_until(inbox, "agent_message.saved")

    assert delivered == {
        "type": "agent_message",
        "id": saved["id"],
        "text": "Hi, I'm Anna.",
        "agent": "Anna",
    }
    assert saved["client_id"] == "a-1"
    stored = await database_sync_to_async(Message.objects.get)(pk=saved["id"])
    assert (stored.role, stored.author_id, stored.finish_reason) == ("agent", agent_user.pk, "stop")
    # Sent again (a lost acknowledgement): acknowledged, neither stored nor delivered twice.
    await inbox.send_json_to(
        {
            "type": "agent_message",
            "conversation": conversation,
            "text": "Hi, I'm Anna.",
            "client_id": "a-1",
        }
    )
    assert (await receive_until(inbox, "agent_message.saved"))["id"] == saved["id"]
    assert await customer.receive_nothing(timeout=0.3)
    assert await messages_of(conversation) == [("agent", "Hi, I'm Anna.")]
    await customer.disconnect()
    await inbox.disconnect()


async def test_every_tab_of_the_customer_gets_the_agents_reply(agent_user):
    cookie = await new_session_cookie()
    first, hello = await open_chat(cookie)
    second, _ = await open_chat(cookie, hello["conversation"])
    await first.send_json_to({"type": "handoff"})
    for tab in (first, second):
        assert (await receive(tab))["status"] == "waiting_for_agent"
    inbox, _ = await open_inbox(await login_cookie(agent_user))
    await inbox.send_json_to({"type": "claim", "conversation": hello["conversation"]})
    await inbox.send_json_to(
        {"type": "agent_message", "conversation": hello["conversation"], "text": "Hello!"}
    )

    for tab in (first, second):
        assert (await receive(tab))["status"] == "with_agent"
        assert (await receive(tab))["text"] == "Hello!"
    for socket in (first, second, inbox):
        await socket.disconnect()


async def test_reconnecting_shows_the_agents_messages_and_who_answers(agent_user):
    cookie = await new_session_cookie()
    customer, hello = await open_chat(cookie)
    await customer.send_json_to({"type": "handoff"})
    await receive(customer)
    inbox = await claimed(await login_cookie(agent_user), customer, hello["conversation"])
    await inbox.send_json_to(
        {"type": "agent_message", "conversation": hello["conversation"], "text": "On it."}
    )
    await receive(customer)
    await customer.disconnect()

    again, resumed = await open_chat(cookie, hello["conversation"])
    status = await receive(again)

    assert resumed["protocol"] == 2 and resumed["status"] == "with_agent"
    assert [(m["role"], m["text"], m.get("agent")) for m in resumed["messages"]] == [
        ("agent", "On it.", "Anna")
    ]
    assert status["type"] == "status" and status["agent"] == "Anna"
    await again.disconnect()
    await inbox.disconnect()


async def test_two_agents_claiming_at_once_one_wins(agent_user, second_agent):
    customer, conversation = await waiting_conversation()
    anna, _ = await open_inbox(await login_cookie(agent_user))
    ben, _ = await open_inbox(await login_cookie(second_agent))

    await asyncio.gather(
        anna.send_json_to({"type": "claim", "conversation": conversation}),
        ben.send_json_to({"type": "claim", "conversation": conversation}),
    )

    async def outcome(socket) -> str:
        while (frame := await receive(socket))["type"] not in ("transcript", "error"):
            pass
        return frame["type"] if frame["type"] == "transcript" else frame["code"]

    results = sorted([await outcome(anna), await outcome(ben)])
    assert results == ["conflict", "transcript"]
    row = await conversation_row(conversation)
    winner = "anna" if row.agent_id == agent_user.pk else "ben"
    loser = ben if winner == "anna" else anna
    # The loser cannot answer the customer.
    await loser.send_json_to(
        {"type": "agent_message", "conversation": conversation, "text": "me too"}
    )
    assert (await receive_until(loser, "error"))["code"] == "conflict"
    assert await messages_of(conversation) == []
    for socket in (customer, anna, ben):
        await socket.disconnect()


def test_racing_claims_in_threads_have_exactly_one_winner(
    agent_user, second_agent, transactional_db
):
    """The claim is one conditional UPDATE: on PostgreSQL, two transactions at once."""
    import threading

    from django.db import connection

    from conversations import handoff

    conversation = Conversation.objects.create(session_key="s")
    handoff.do_request_handoff(conversation.pk, "asked")
    barrier = threading.Barrier(2)
    results: dict[int, str] = {}

    def claim(user_id: int) -> None:
        barrier.wait()
        try:
            handoff.do_claim(conversation.pk, user_id)
            results[user_id] = "won"
        except handoff.HandoffRefused as refused:
            results[user_id] = refused.code
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(u.pk,)) for u in (agent_user, second_agent)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(results.values()) == ["conflict", "won"]
    conversation.refresh_from_db()
    winner = next(user for user, result in results.items() if result == "won")
    assert (conversation.status, conversation.agent_id) == ("with_agent", winner)


async def test_handing_back_lets_the_bot_answer_again(agent_user, retrieved, active_model_version):
    retrieved["answer"] = found(SHIPPING)
    customer, conversation = await waiting_conversation()
    inbox = await claimed(await login_cookie(agent_user), customer, conversation)

    await inbox.send_json_to({"type": "hand_back", "conversation": conversation})
    status = await receive(customer)
    turn = await chat_turn(customer, "how much is shipping?")

    assert status["status"] == "open"
    assert turn["end"]["model_version"] == active_model_version.name
    while (await receive_until(inbox, "conversation.updated"))["conversation"]["status"] != "open":
        pass  # the claim's update came first; the hand-back's must follow
    await customer.disconnect()
    await inbox.disconnect()


# --- closing and the survey ------------------------------------------------------------------


async def test_closing_asks_the_survey_once_and_stores_one_answer(agent_user):
    cookie = await new_session_cookie()
    customer, hello = await open_chat(cookie)
    conversation = hello["conversation"]
    await customer.send_json_to({"type": "handoff"})
    await receive(customer)
    inbox = await claimed(await login_cookie(agent_user), customer, conversation)

    await inbox.send_json_to({"type": "close", "conversation": conversation})
    status = await receive(customer)
    request = await receive(customer)
    await customer.send_json_to({"type": "csat", "score": 4, "comment": " quick help "})
    saved = await receive(customer)
    await customer.send_json_to({"type": "csat", "score": 1})
    await expect_error(customer, "invalid")

    assert status["status"] == "closed" and request == {"type": "csat.request"}
    assert saved == {"type": "csat.saved", "score": 4}
    answer = await database_sync_to_async(Satisfaction.objects.get)(conversation_id=conversation)
    assert (answer.score, answer.comment, answer.handed_off) == (4, "quick help", True)
    await customer.disconnect()
    # Answered: reconnecting does not ask again.
    again, _ = await open_chat(cookie, conversation)
    assert (await receive(again))["status"] == "closed"
    assert await again.receive_nothing(timeout=0.3)
    await again.disconnect()
    await inbox.disconnect()


async def test_a_closed_unanswered_conversation_asks_again_on_reconnect(agent_user):
    cookie = await new_session_cookie()
    customer, hello = await open_chat(cookie)
    await customer.send_json_to({"type": "handoff"})
    await receive(customer)
    inbox, _ = await open_inbox(await login_cookie(agent_user))
    await inbox.send_json_to({"type": "close", "conversation": hello["conversation"]})
    await receive(customer)
    await receive(customer)
    await customer.disconnect()

    again, _ = await open_chat(cookie, hello["conversation"])

    assert (await receive(again))["status"] == "closed"
    assert await receive(again) == {"type": "csat.request"}
    await again.disconnect()
    await inbox.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "csat", "score": 0},
        {"type": "csat", "score": 6},
        {"type": "csat", "score": "5"},
        {"type": "csat"},
        {"type": "csat", "score": 3, "comment": 7},
    ],
)
async def test_bad_survey_answers_are_refused_and_the_socket_stays_open(frame):
    socket, _ = await open_chat(await new_session_cookie())

    await socket.send_json_to(frame)

    await expect_error(socket, "invalid")
    await still_open(socket)
    await socket.disconnect()


async def test_a_flood_of_handoff_and_survey_frames_is_rate_limited(settings):
    settings.CHAT_FEEDBACK_PER_MINUTE = 3
    socket, _ = await open_chat(await new_session_cookie())

    for _ in range(3):
        await socket.send_json_to({"type": "handoff"})
        assert (await receive(socket))["type"] == "status"
    await socket.send_json_to({"type": "handoff"})
    await expect_error(socket, "rate_limited")
    await socket.send_json_to({"type": "csat", "score": 5})
    await expect_error(socket, "rate_limited")

    await still_open(socket)
    await socket.disconnect()


async def test_the_survey_is_refused_before_the_conversation_is_closed():
    socket, _ = await open_chat(await new_session_cookie())

    await socket.send_json_to({"type": "csat", "score": 5})

    await expect_error(socket, "invalid")
    assert not await database_sync_to_async(Satisfaction.objects.exists)()
    await socket.disconnect()


async def test_a_message_to_a_closed_conversation_reopens_it_with_the_bot(
    agent_user, retrieved, active_model_version
):
    retrieved["answer"] = found(SHIPPING)
    customer, conversation = await waiting_conversation()
    inbox, _ = await open_inbox(await login_cookie(agent_user))
    await inbox.send_json_to({"type": "close", "conversation": conversation})
    await receive(customer)
    await receive(customer)

    await customer.send_json_to({"type": "user_message", "text": "how much is shipping?"})
    saved = await receive(customer)
    status = await receive(customer)
    start = await receive(customer)

    assert saved["type"] == "user_message.saved"
    assert status["status"] == "open"
    assert start["type"] == "bot_message.start"
    await receive_until(customer, "bot_message.end")
    await customer.disconnect()
    await inbox.disconnect()


# --- who may act as an agent -----------------------------------------------------------------


async def _refused(cookie: str | None) -> int:
    socket = inbox_socket(cookie)
    connected, _ = await socket.connect(timeout=10)
    assert connected
    closing = await socket.receive_output(timeout=10)
    await socket.disconnect()
    assert closing["type"] == "websocket.close"
    return closing["code"]


async def test_only_staff_can_open_the_inbox(customer_user):
    assert await _refused(None) == 4403
    assert await _refused(await new_session_cookie()) == 4403
    assert await _refused(await login_cookie(customer_user)) == 4403


@pytest.mark.parametrize("frame_type", ["agent_message", "claim", "close", "hand_back"])
async def test_agent_frames_on_the_chat_socket_are_forbidden(frame_type):
    customer, conversation = await waiting_conversation()

    await customer.send_json_to(
        {"type": frame_type, "conversation": conversation, "text": "I am staff, honest"}
    )

    await expect_error(customer, "forbidden")
    assert await messages_of(conversation) == []
    assert (await conversation_row(conversation)).status == "waiting_for_agent"
    await still_open(customer)
    await customer.disconnect()


async def test_an_agent_whose_staff_status_is_taken_away_can_no_longer_act(agent_user):
    customer, conversation = await waiting_conversation()
    inbox, _ = await open_inbox(await login_cookie(agent_user))
    agent_user.is_staff = False
    await database_sync_to_async(agent_user.save)()

    await inbox.send_json_to({"type": "claim", "conversation": conversation})

    assert (await receive_until(inbox, "error"))["code"] == "forbidden"
    assert (await conversation_row(conversation)).status == "waiting_for_agent"
    await customer.disconnect()
    await inbox.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "claim", "conversation": "not-a-uuid"}, "not_found"),
        ({"type": "claim", "conversation": "8f6a1b1e-0000-4000-8000-000000000000"}, "not_found"),
        ({"type": "claim"}, "invalid"),
        ({"type": "agent_message", "conversation": "x", "text": ""}, "invalid"),
        ({"type": "agent_message", "conversation": "x", "text": "x" * 5000}, "too_long"),
        ({"type": "user_message", "text": "hi"}, "unknown_type"),
        ({"type": "inbox.page", "offset": "2"}, "invalid"),
        ({"type": "inbox.page"}, "invalid"),
    ],
)
async def test_bad_inbox_frames_get_an_error_and_the_socket_stays_open(agent_user, frame, code):
    inbox, _ = await open_inbox(await login_cookie(agent_user))

    await inbox.send_json_to(frame)

    await expect_error(inbox, code)
    await still_open(inbox)
    await inbox.disconnect()


async def test_an_agent_must_claim_before_answering(agent_user):
    customer, conversation = await waiting_conversation()
    inbox, _ = await open_inbox(await login_cookie(agent_user))

    await inbox.send_json_to({"type": "agent_message", "conversation": conversation, "text": "hi"})

    assert (await receive_until(inbox, "error"))["code"] == "conflict"
    assert await customer.receive_nothing(timeout=0.3)
    await customer.disconnect()
    await inbox.disconnect()


# --- learning from agents --------------------------------------------------------------------


async def test_an_agents_answer_to_a_declined_question_becomes_an_example(
    agent_user, retrieved, active_model_version
):
    retrieved["answer"] = found(low(SHIPPING, 0.1))
    customer, hello = await open_chat(await new_session_cookie())
    conversation = hello["conversation"]
    await chat_turn(customer, "do you ship to Mars?")
    await chat_turn(customer, "do you ship to Mars at all?")
    await receive(customer)  # waiting for a person after two declines
    inbox = await claimed(await login_cookie(agent_user), customer, conversation)
    retrieved["answer"] = found(SHIPPING)

    await inbox.send_json_to(
        {"type": "agent_message", "conversation": conversation, "text": "Only to Earth."}
    )
    saved = await receive_until(inbox, "agent_message.saved")
    await inbox.send_json_to({"type": "ping"})  # the example is recorded after delivery
    await receive_until(inbox, "pong")

    feedback = await database_sync_to_async(
        lambda: Feedback.objects.select_related("answered_question", "message").get()
    )()
    assert feedback.source == "agent" and feedback.rating == 1
    assert feedback.message_id == saved["id"] and feedback.owner_key == f"agent:{agent_user.pk}"
    assert feedback.answered_question.text == "do you ship to Mars at all?"
    assert feedback.review_status == "pending"
    assert [a["title"] for a in feedback.message.grounding] == ["Shipping cost"]
    await customer.disconnect()
    await inbox.disconnect()


# --- roles: who may answer, who may release a claim ------------------------------------------


async def test_staff_without_the_answering_permission_cannot_open_the_inbox(django_user_model):
    clerk = await database_sync_to_async(django_user_model.objects.create_user)(
        username="clerk", password="x", is_staff=True
    )

    assert await _refused(await login_cookie(clerk)) == 4403


async def test_a_revoked_agents_open_socket_gets_no_more_customer_messages(agent_user):
    inbox, _ = await open_inbox(await login_cookie(agent_user))
    first, first_id = await waiting_conversation()
    assert (await receive_until(inbox, "conversation.updated"))["conversation"]["id"] == first_id
    permission = await database_sync_to_async(
        lambda: agent_user.user_permissions.get(codename="answer_customers")
    )()
    await database_sync_to_async(agent_user.user_permissions.remove)(permission)

    second, _ = await waiting_conversation()  # announced to the inbox group

    closing = await inbox.receive_output(timeout=10)
    assert closing == {"type": "websocket.close", "code": 4403}  # closed, nothing delivered
    for socket in (first, second):
        await socket.disconnect()
    await inbox.disconnect()


async def test_a_revoked_agent_cannot_read_a_transcript(agent_user):
    customer, conversation = await waiting_conversation()
    inbox, _ = await open_inbox(await login_cookie(agent_user))
    agent_user.is_active = False
    await database_sync_to_async(agent_user.save)()

    await inbox.send_json_to({"type": "transcript", "conversation": conversation})

    assert (await receive(inbox))["code"] == "forbidden"
    await customer.disconnect()
    await inbox.disconnect()


async def test_a_supervisor_releases_a_claim_and_the_customer_hears_it(
    agent_user, second_agent, django_user_model
):
    from conversations import handoff, handoff_events

    customer, conversation = await waiting_conversation()
    inbox = await claimed(await login_cookie(agent_user), customer, conversation)
    supervisor = await database_sync_to_async(
        lambda: allow_answering(
            django_user_model.objects.create_user("sue", password="x", is_staff=True),
            supervise=True,
        )
    )()

    with pytest.raises(handoff.HandoffRefused, match="Only supervisors"):
        await database_sync_to_async(handoff.do_release_claim)(conversation, second_agent)
    await database_sync_to_async(handoff_events.release_claim)(conversation, supervisor)

    status = await receive(customer)
    assert status["type"] == "status" and status["status"] == "waiting_for_agent", status
    row = await conversation_row(conversation)
    assert (row.status, row.agent_id) == ("waiting_for_agent", None)
    await customer.disconnect()
    await inbox.disconnect()


async def test_a_supervisor_gives_a_claim_to_another_agent_and_both_sides_hear_it(
    agent_user, second_agent, django_user_model
):
    from conversations import handoff_events

    customer, conversation = await waiting_conversation()
    inbox = await claimed(await login_cookie(agent_user), customer, conversation)
    supervisor = await database_sync_to_async(
        lambda: allow_answering(
            django_user_model.objects.create_user("sue", password="x", is_staff=True),
            supervise=True,
        )
    )()

    await database_sync_to_async(handoff_events.reassign)(conversation, supervisor, second_agent.pk)

    status = await receive(customer)
    assert (status["status"], status["agent"]) == ("with_agent", "Ben"), status
    # The inbox heard the claim first, then the reassignment.
    while (updated := await receive_until(inbox, "conversation.updated"))["conversation"][
        "agent_id"
    ] != second_agent.pk:
        assert updated["conversation"]["agent"] == "Anna"
    assert updated["conversation"]["agent"] == "Ben"
    await customer.disconnect()
    await inbox.disconnect()


async def test_a_claim_goes_back_to_the_queue_when_its_agent_has_been_away(agent_user, settings):
    from datetime import timedelta

    from django.utils import timezone

    from conversations import handoff_events

    settings.HANDOFF_CLAIM_RELEASE_MINUTES = 30
    customer, conversation = await waiting_conversation()
    inbox = await claimed(await login_cookie(agent_user), customer, conversation)
    await inbox.disconnect()  # the agent closed the inbox (their presence row goes)
    assert await database_sync_to_async(handoff_events.release_abandoned_claims)() == 0  # recent
    long_ago = timezone.now() - timedelta(minutes=31)
    await database_sync_to_async(Conversation.objects.filter(pk=conversation).update)(
        updated_at=long_ago
    )

    assert await database_sync_to_async(handoff_events.release_abandoned_claims)() == 1

    status = await receive(customer)
    assert status["type"] == "status" and status["status"] == "waiting_for_agent", status
    await customer.disconnect()


async def test_one_network_cannot_fill_the_queue(settings):
    settings.HANDOFF_MAX_WAITING_PER_NETWORK = 2
    waiting = []
    for _ in range(2):
        socket, _hello = await open_chat(await new_session_cookie(), client="203.0.113.7")
        await socket.send_json_to({"type": "handoff"})
        assert (await receive(socket))["status"] == "waiting_for_agent"
        waiting.append(socket)

    third, hello = await open_chat(await new_session_cookie(), client="203.0.113.7")
    await third.send_json_to({"type": "handoff"})

    status = await receive(third)
    assert status["status"] == "open" and "reachable at" in status["detail"]  # the contact
    assert (await conversation_row(hello["conversation"])).status == "open"
    for socket in (*waiting, third):
        await socket.disconnect()
