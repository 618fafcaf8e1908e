"""A customer's data exported and erased on request, and conversations past the retention
period deleted (conversations.privacy)."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from conversations.models import Conversation, Feedback, Message
from conversations.privacy import (
    Customer,
    customer_data,
    delete_expired_conversations,
    erase_customer,
)
from knowledge.models import ArticleProposal, KnowledgeArticle
from knowledge.proposals import pending_proposal
from learning.examples import kto_rows
from learning.feedback import usable_feedback
from learning.models import ModelVersion, TrainingRun

pytestmark = pytest.mark.django_db


def exchange(session: str, question: str, *, correction: str = "", user=None) -> Feedback:
    conversation = Conversation.objects.create(session_key=session, user=user)
    Message.objects.create(conversation=conversation, role="user", text=question)
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        text="Refunds take 5 days.",
        finish_reason="stop",
    )
    return Feedback.objects.create(
        message=reply,
        conversation=conversation,
        owner_key=f"user:{user.pk}" if user else f"session:{session}",
        rating=-1,
        correction=correction,
    )


def test_an_export_holds_the_customers_conversations_and_ratings_only():
    mine = exchange("s1", "my card 4111 1111 1111 1111?", correction="Faster please.")
    exchange("s1", "and my refund?")
    exchange("s2", "someone else's question")

    data = customer_data(Customer(session_key="s1"))

    assert data["customer"] == "session s1"
    assert len(data["conversations"]) == 2
    texts = [m["text"] for c in data["conversations"] for m in c["messages"]]
    assert "my card 4111 1111 1111 1111?" in texts  # their own data, as they wrote it
    assert "someone else's question" not in texts
    [rating] = data["conversations"][0]["ratings"]
    assert (rating["message_id"], rating["correction"]) == (mine.message_id, "Faster please.")
    json.dumps(data)  # JSON-ready


def test_an_erasure_leaves_nothing_for_a_later_run_export_or_proposal():
    article = KnowledgeArticle.objects.create(title="Refunds", text="Refunds take 5 days.")
    theirs = exchange("s1", "refund?", correction="Refunds take 1 day.")
    shared = exchange("s1", "refund again?", correction="Refunds take 2 days.")
    other = exchange("s2", "refund?", correction="Refunds take 2 days.")
    only_theirs, _ = pending_proposal(article, "Refunds take 1 day.", article.text, None)
    only_theirs.feedback.add(theirs)
    supported, _ = pending_proposal(article, "Refunds take 2 days.", article.text, None)
    supported.feedback.add(shared, other)
    version = ModelVersion.objects.create(name="run-1", checkpoint_path="/nowhere")
    run = TrainingRun.objects.create(trigger="command", status="succeeded", result_version=version)
    Feedback.objects.filter(pk=theirs.pk).update(used_by_run=run)

    erasure = erase_customer(Customer(session_key="s1"))

    assert (erasure.conversations, erasure.messages, erasure.ratings) == (2, 4, 2)
    assert erasure.proposals == 1 and erasure.trained_versions == ["run-1"]
    assert list(usable_feedback(require_approval=False)) == [other]  # a later run
    assert {row["completion"][0]["content"] for row in kto_rows(Feedback.objects.all())} == {
        "Refunds take 5 days.",
        "Refunds take 2 days.",
    }  # a later export: s2's only
    assert list(ArticleProposal.objects.all()) == [supported]  # s2 still proposes it
    assert not Conversation.objects.filter(session_key="s1").exists()


def test_conversations_past_the_retention_period_are_deleted(settings):
    settings.CHAT_RETENTION_DAYS = 30
    old = exchange("old", "a question from long ago")
    recent = exchange("recent", "a question from last week")
    long_ago = timezone.now() - timedelta(days=31)
    Conversation.objects.filter(pk=old.conversation_id).update(updated_at=long_ago)
    Message.objects.filter(conversation_id=old.conversation_id).update(created_at=long_ago)

    assert delete_expired_conversations().conversations == 1

    assert list(Conversation.objects.all()) == [recent.conversation]
    assert list(Feedback.objects.all()) == [recent]
    settings.CHAT_RETENTION_DAYS = 0  # for ever
    Conversation.objects.update(updated_at=long_ago)
    assert delete_expired_conversations().conversations == 0


def test_the_command_exports_and_erases_one_customer(django_user_model, tmp_path):
    user = django_user_model.objects.create_user("carla", password="x")
    exchange("s9", "hello", user=user)
    exchange("s2", "not carla")
    output = tmp_path / "carla.json"

    call_command("customer_data", "export", "--user", "carla", "--output", str(output))
    stdout = io.StringIO()
    call_command("customer_data", "erase", "--user", "carla", "--yes", stdout=stdout)

    assert json.loads(output.read_text())["customer"] == f"user #{user.pk}"
    assert "Erased user #" in stdout.getvalue() and "1 conversation(s)" in stdout.getvalue()
    assert list(Conversation.objects.values_list("session_key", flat=True)) == ["s2"]


def test_the_admin_exports_then_erases_after_confirmation(client, staff_user):
    feedback = exchange("s1", "my question")
    exchange("s2", "another customer's")
    client.force_login(staff_user)
    url = "/admin/conversations/conversation/"
    selected = {"_selected_action": [str(feedback.conversation_id)]}

    exported = client.post(url, {**selected, "action": "export_customer_data"})
    asked = client.post(url, {**selected, "action": "erase_customer_data"})

    assert exported["Content-Disposition"].startswith("attachment")
    assert exported.json()[0]["customer"] == "session s1"
    assert asked.status_code == 200 and b"Yes, erase their data" in asked.content
    assert Conversation.objects.count() == 2  # nothing erased before the confirmation
    done = client.post(url, {**selected, "action": "erase_customer_data", "confirm": "yes"})
    assert done.status_code == 302
    assert list(Conversation.objects.values_list("session_key", flat=True)) == ["s2"]
