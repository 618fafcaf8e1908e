"""Personal data out of customers' and agents' text before training and export."""

from __future__ import annotations

import io
import json

import pytest

from conversations.models import Conversation, Feedback, Message
from conversations.redaction import redact
from learning.export import write_kto_jsonl


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at jane.doe+shop@example.co.uk please", "mail me at [email] please"),
        ("IBAN GB82 WEST 1234 5698 7654 32 for the refund", "IBAN [iban] for the refund"),
        ("card 4111 1111 1111 1111 was charged", "card [card] was charged"),
        ("card 4111-1111-1111-1111 was charged", "card [card] was charged"),
        ("call +44 20 7946 0958 after six", "call [phone] after six"),
        ("order 1234 5678 9012 3456 arrived", "order 1234 5678 9012 3456 arrived"),  # not Luhn
        ("it took 30 days and cost 49.90 EUR", "it took 30 days and cost 49.90 EUR"),
    ],
)
def test_it_redacts_personal_data_and_leaves_the_rest(text, expected):
    assert redact(text) == expected


def test_national_numbers_need_the_region_and_the_pattern_is_configurable(settings):
    assert redact("ring 020 7946 0958") == "ring 020 7946 0958"
    settings.LEARNING_PHONE_REGION = "GB"
    assert redact("ring 020 7946 0958") == "ring [phone]"
    settings.LEARNING_REDACT_PATTERN = r"ORD-\d{6}"
    assert redact("where is ORD-123456?") == "where is [redacted]?"


def test_what_the_business_publishes_is_kept():
    article = "Write to help@shop.example or call +44 20 5550 0177."

    text = redact("write help@shop.example or +44 20 5550 0177, not me@home.example", [article])

    assert text == "write help@shop.example or +44 20 5550 0177, not [email]"


@pytest.mark.django_db
def test_an_export_carries_no_personal_data_of_customers_or_agents():
    conversation = Conversation.objects.create(session_key="s1")
    Message.objects.create(
        conversation=conversation, role="user", text="refund to GB82 WEST 1234 5698 7654 32?"
    )
    reply = Message.objects.create(
        conversation=conversation,
        role="assistant",
        text="Refunds take 5 days.",
        finish_reason="stop",
    )
    Feedback.objects.create(
        message=reply,
        conversation=conversation,
        owner_key="session:s1",
        rating=-1,
        correction="Mail jane@home.example, card 4111 1111 1111 1111.",
        review_status="approved",
    )
    stream = io.StringIO()

    write_kto_jsonl(Feedback.objects.all(), stream)

    rows = [json.loads(line) for line in stream.getvalue().splitlines()]
    text = json.dumps(rows)
    assert "GB82" not in text and "jane@" not in text and "4111" not in text
    assert rows[0]["prompt"][-1]["content"] == "refund to [iban]?"
    assert rows[1]["completion"][0]["content"] == "Mail [email], card [card]."
