"""Customers' wordings as candidate example questions: a thumbs-up over /ws/chat/ on a reply
written from an article proposes the question it answered (redacted, once per wording); a
thumbs-down, a rejection in review or an erasure takes that support back; staff accept them in
bulk in the admin (the article's questions grow and it is embedded again) or reject them for
good."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Permission

from conversations import privacy, review
from conversations.models import Conversation, Feedback, Message
from knowledge.models import KnowledgeArticle, WordingCandidate
from knowledge.services import do_save_article
from tests.conversations.chat_sockets import new_session_cookie, open_chat, receive
from tests.conversations.retrieval_stubs import AS_STORED

pytestmark = pytest.mark.usefixtures("chat_test")

QUESTION = "what do you charge to send a parcel to Spain? mail me at ana@example.org"
REDACTED = "what do you charge to send a parcel to Spain? mail me at [email]"


@pytest.fixture
def article(tiny_encoder):
    return do_save_article(
        KnowledgeArticle(
            pk=7,
            title="Shipping cost",
            text="Standard shipping costs 4.90 EUR.",
            example_questions="how much is shipping",
        )
    )


@database_sync_to_async
def exchange(conversation: str, question: str, **reply) -> Message:
    """A question and the bot's finished reply to it, written from the shipping article."""
    Message.objects.create(conversation_id=conversation, role="user", text=question)
    fields = {"text": "Shipping costs 4.90 EUR.", "grounding": AS_STORED, **reply}
    return Message.objects.create(
        conversation_id=conversation, role="assistant", finish_reason="stop", **fields
    )


async def asks_and_rates(question: str, rating: int, **reply) -> tuple:
    socket, hello = await open_chat(await new_session_cookie())
    message = await exchange(hello["conversation"], question, **reply)
    await socket.send_json_to({"type": "feedback", "message_id": message.pk, "rating": rating})
    saved = await receive(socket)
    assert saved["type"] == "feedback.saved", saved
    return socket, message


@database_sync_to_async
def candidates() -> list[tuple[str, int, str, int]]:
    return [
        (c.question, c.article_id, c.status, c.feedback.count())
        for c in WordingCandidate.objects.order_by("id")
    ]


async def test_a_thumbs_up_proposes_the_question_it_answered_once_per_wording(article):
    first, _ = await asks_and_rates(QUESTION, 1)
    second, _ = await asks_and_rates(QUESTION.upper().replace("ANA@EXAMPLE.ORG", "x@y.org"), 1)
    third, _ = await asks_and_rates("How much is shipping", 1)  # already an example question
    fourth, _ = await asks_and_rates("can I pay by card", -1)  # rated down: no support

    # The same wording in capitals, with another address, supports the same candidate.
    assert await candidates() == [(REDACTED, 7, "pending", 2)]
    for socket in (first, second, third, fourth):
        await socket.disconnect()


async def test_a_declined_reply_proposes_nothing(article):
    socket, _ = await asks_and_rates("what's the weather", 1, declined=True)
    assert await candidates() == []
    await socket.disconnect()


async def test_rating_down_again_withdraws_the_support_and_the_lonely_candidate(article):
    socket, message = await asks_and_rates(QUESTION, 1)
    assert len(await candidates()) == 1

    await socket.send_json_to({"type": "feedback", "message_id": message.pk, "rating": -1})
    assert (await receive(socket))["type"] == "feedback.saved"

    assert await candidates() == []
    await socket.disconnect()


def rated(session: str, question: str) -> Feedback:
    """``session`` asked ``question``, had a reply from the shipping article and rated it up."""
    from conversations.services import Owner, do_rate_message

    conversation = Conversation.objects.create(session_key=session)
    Message.objects.create(conversation=conversation, role="user", text=question)
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        text="4.90 EUR",
        finish_reason="stop",
        grounding=AS_STORED,
    )
    return do_rate_message(conversation.pk, Owner(None, session), reply.pk, rating=1)


@pytest.mark.django_db
def test_a_rejected_rating_supports_no_wording(article, staff_user):
    feedback = rated("s", QUESTION)
    assert WordingCandidate.objects.count() == 1

    review.reject_feedback([feedback.pk], staff_user)

    assert WordingCandidate.objects.count() == 0


@pytest.mark.django_db
def test_staff_accept_wordings_in_bulk_and_the_article_finds_them(article, admin_client):
    pending = [
        WordingCandidate.objects.create(
            article=article, question=q, question_digest=f"d{n}", source="rated_up"
        )
        for n, q in enumerate(["what does postage cost", "price to send to spain"])
    ]
    before = article.embedding_count

    response = admin_client.post(
        "/admin/knowledge/wordingcandidate/",
        {"action": "accept", "_selected_action": [str(c.pk) for c in pending]},
        follow=True,
    )

    article.refresh_from_db()
    assert b"2 wording(s) added" in response.content
    assert article.example_questions.splitlines() == [
        "how much is shipping",
        "what does postage cost",
        "price to send to spain",
    ]
    assert article.embedding_count == before + 2  # embedded again at once
    assert article.revisions.count() == 1  # one edit, its old text kept
    assert set(WordingCandidate.objects.values_list("status", flat=True)) == {"accepted"}


async def test_a_rejected_wording_is_not_proposed_again(article, staff_user):
    socket, _ = await asks_and_rates(QUESTION, 1)
    from knowledge.wordings import do_reject_wordings

    await database_sync_to_async(do_reject_wordings)(WordingCandidate.objects.all())
    other, _ = await asks_and_rates(QUESTION, 1)

    assert [(q, s) for q, _, s, _ in await candidates()] == [(REDACTED, "rejected")]
    for s in (socket, other):
        await s.disconnect()


@pytest.mark.django_db
def test_an_erasure_takes_the_wordings_only_that_customer_supported(article):
    rated("leaving", "postage to spain?")
    rated("leaving", "what does a parcel cost")
    rated("staying", "what does a parcel cost")

    privacy.erase_customer(privacy.Customer(session_key="leaving"))

    assert list(WordingCandidate.objects.values_list("question", flat=True)) == [
        "what does a parcel cost"
    ]
    assert WordingCandidate.objects.get().feedback.count() == 1


def test_only_staff_who_may_change_wordings_can_decide(article, client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_wordingcandidate"))
    candidate = WordingCandidate.objects.create(
        article=article, question="postage?", question_digest="d", source="rated_up"
    )
    client.force_login(viewer)

    client.post(
        "/admin/knowledge/wordingcandidate/",
        {"action": "accept", "_selected_action": [str(candidate.pk)]},
    )

    candidate.refresh_from_db()
    assert candidate.status == "pending"


async def test_a_decline_rated_down_is_asked_not_in_the_knowledge_base(article):
    wanted, _ = await asks_and_rates("do you sell gift cards", -1, declined=True, grounding=[])
    person, _ = await asks_and_rates("can I talk to a human", -1, declined=True, grounding=[])

    # A person request rated down says "sooner", not "answer this": no wording.
    assert await candidates() == [("do you sell gift cards", None, "pending", 1)]
    for socket in (wanted, person):
        await socket.disconnect()


@pytest.mark.django_db
def test_a_question_an_agent_answered_is_proposed_for_the_article_retrieved(
    article, django_user_model
):
    from conversations.agent_answers import do_record_agent_answer

    agent = django_user_model.objects.create_user("anna", is_staff=True)
    conversation = Conversation.objects.create(session_key="s", status="with_agent", agent=agent)
    Message.objects.create(conversation=conversation, role="user", text="postage to Spain?")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        text="Sorry, I can't help with that.",
        finish_reason="stop",
        declined=True,
    )
    answer = Message.objects.create(
        conversation=conversation,
        role="agent",
        text="4.90 EUR.",
        author=agent,
        finish_reason="stop",
    )

    do_record_agent_answer(answer.pk, AS_STORED)

    candidate = WordingCandidate.objects.get()
    assert (candidate.question, candidate.article_id, candidate.source) == (
        "postage to Spain?",
        7,
        "agent",
    )


@pytest.mark.django_db
def test_a_wording_without_an_article_waits_for_staff_to_pick_one(article, admin_client):
    homeless = WordingCandidate.objects.create(
        question="gift cards?", question_digest="d", source="declined"
    )
    url = "/admin/knowledge/wordingcandidate/"

    refused = admin_client.post(
        url, {"action": "accept", "_selected_action": [str(homeless.pk)]}, follow=True
    )
    homeless.refresh_from_db()
    assert b"have no article yet" in refused.content and homeless.status == "pending"

    page = admin_client.get(f"{url}{homeless.pk}/change/")
    assert b'name="article"' in page.content  # a pending wording's article can be picked
    homeless.article = article
    homeless.save()
    admin_client.post(url, {"action": "accept", "_selected_action": [str(homeless.pk)]})
    article.refresh_from_db()
    assert "gift cards?" in article.example_questions.splitlines()
