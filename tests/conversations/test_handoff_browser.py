"""Handing a conversation to a person, in two real browsers: a customer on the chat page and an
agent on the staff inbox, both against one live Daphne (`tests.conversations.live_server`) with
the tiny model. With REDIS_URL unset the channel layer is in memory, which still reaches both
sockets: they are on the same process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conversations.models import Conversation, Message, Satisfaction
from tests.agents import allow_answering
from tests.conversations.live_server import CHROMIUM_ARGS, daphne_serving

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

SCREENSHOT_CUSTOMER = Path("/tmp/handoff-customer.png")
SCREENSHOT_INBOX = Path("/tmp/handoff-inbox.png")
REPLY_TIMEOUT_MS = 60_000
AGENT_PASSWORD = "agent-pass-123"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live_server_url(transactional_db: None, tmp_path: Path) -> Iterator[str]:
    with daphne_serving(tmp_path) as url:
        yield url


@pytest.fixture
def agent(django_user_model):
    return allow_answering(
        django_user_model.objects.create_user(
            username="agent", password=AGENT_PASSWORD, first_name="Dana", is_staff=True
        )
    )


def _expect_connected(page: Page) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")


def _send(page: Page, text: str) -> Locator:
    """Types `text` in the chat, presses Enter; returns the customer's message once stored."""
    from playwright.sync_api import expect

    composer = page.get_by_test_id("composer-input")
    composer.fill(text)
    composer.press("Enter")
    expect(composer).to_have_value("")
    sent = page.locator('.message[data-role="user"]').last
    expect(sent.get_by_test_id("message-text")).to_have_text(text)
    expect(sent).to_have_attribute("data-message-id", re.compile(r"^\d+$"))
    return sent


def _sign_in_to_the_inbox(page: Page, url: str) -> None:
    """Opens /inbox/, is sent to the admin's login, signs in, and lands on the inbox."""
    from playwright.sync_api import expect

    page.goto(f"{url}/inbox/")
    expect(page).to_have_url(f"{url}/admin/login/?next=/inbox/")
    page.get_by_label("Username").fill("agent")
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{url}/inbox/")
    _expect_connected(page)


def test_it_hands_the_customer_to_a_person_who_answers_and_closes(
    chromium: Path, active_model_version: object, agent: object, live_server_url: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url = live_server_url
    answer = "Hi, I'm Dana. Yes, we ship to Canada: 5-8 business days, duties included."
    comment = "Dana was quick and clear."

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            customer = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
            customer.goto(f"{url}/")
            _expect_connected(customer)
            handoff_button = customer.get_by_test_id("handoff-button")
            banner = customer.get_by_test_id("handoff-status")
            expect(handoff_button).to_be_enabled()
            expect(banner).to_have_text("")

            # The assistant answers first; the customer rates the reply.
            _send(customer, "do you ship to canada")
            reply = customer.locator('.message[data-role="assistant"]').first
            expect(reply.get_by_test_id("thumbs-up")).to_be_enabled(timeout=REPLY_TIMEOUT_MS)
            reply.get_by_test_id("thumbs-up").click()
            expect(reply.get_by_test_id("thumbs-up")).to_have_attribute("aria-pressed", "true")
            conversation_id = customer.evaluate("() => sessionStorage.getItem('chat:conversation')")

            # The agent signs in; nobody is waiting yet.
            inbox = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            _sign_in_to_the_inbox(inbox, url)
            expect(inbox.get_by_test_id("agent-name")).to_have_text("Signed in as Dana")
            expect(inbox.get_by_test_id("queue-item")).to_have_count(0)
            expect(inbox.get_by_text("Nobody is waiting.")).to_be_visible()

            # The customer asks for a person: told so, and the button goes away.
            handoff_button.click()
            expect(banner).to_have_attribute("data-status", "waiting_for_agent")
            expect(banner).to_have_text("A person from our team will answer you here shortly.")
            expect(handoff_button).to_be_hidden()
            # While waiting the customer can write on, and the assistant stays silent.
            _send(customer, "it's a parcel for Toronto")

            # The conversation appears in the inbox without a reload.
            row = inbox.locator(f'.queue-item[data-conversation-id="{conversation_id}"]')
            expect(row).to_be_visible()
            expect(row.get_by_test_id("queue-meta")).to_contain_text("Waiting")
            expect(row.get_by_test_id("queue-meta")).to_contain_text("Asked for a person")
            expect(row).to_contain_text("Customer: it's a parcel for Toronto")
            expect(inbox.get_by_test_id("waiting-count")).to_have_text("1")
            expect(inbox).to_have_title(re.compile(r"^\(1\) Inbox"))

            # The agent reads the transcript, with the customer's rating of the bot's reply.
            row.click()
            expect(row).to_have_attribute("aria-current", "true")
            entries = inbox.get_by_test_id("transcript-entry")
            expect(entries).to_have_count(3)
            expect(entries.nth(0)).to_have_attribute("data-role", "user")
            expect(entries.nth(1)).to_have_attribute("data-role", "assistant")
            expect(entries.nth(1)).to_contain_text("Customer rated it helpful")
            expect(entries.nth(2).get_by_test_id("entry-text")).to_have_text(
                "it's a parcel for Toronto"
            )
            reply_input = inbox.get_by_test_id("reply-input")
            expect(reply_input).to_be_disabled()

            # Claimed: the customer hears who answers; the row moves to "being answered".
            inbox.get_by_test_id("claim-button").click()
            expect(inbox.get_by_test_id("pane-meta")).to_contain_text("With you")
            expect(inbox.get_by_test_id("claim-button")).to_be_hidden()
            expect(inbox.get_by_test_id("assigned-list").locator(".queue-item")).to_have_count(1)
            expect(inbox.get_by_test_id("waiting-count")).to_have_text("0")
            expect(banner).to_have_attribute("data-status", "with_agent")
            expect(banner).to_have_text("Dana is answering you now.")

            # The agent replies (Enter sends); the customer sees a person's message, unrated.
            expect(reply_input).to_be_enabled()
            reply_input.fill(answer)
            reply_input.press("Enter")
            expect(reply_input).to_have_value("")
            expect(entries.last).to_have_attribute("data-message-id", re.compile(r"^\d+$"))
            expect(entries.last).to_contain_text("Dana (agent)")
            from_agent = customer.locator('.message[data-role="agent"]')
            expect(from_agent).to_have_count(1)
            expect(from_agent.get_by_test_id("agent-name")).to_have_text("Dana, Our team")
            expect(from_agent.get_by_test_id("message-text")).to_have_text(answer)
            expect(from_agent.locator(".feedback")).to_have_count(0)

            # The customer answers; the agent sees it arrive.
            _send(customer, "great, thanks!")
            expect(entries).to_have_count(5)
            expect(entries.last.get_by_test_id("entry-text")).to_have_text("great, thanks!")

            # The agent closes it: it leaves the queue, the customer gets the survey.
            inbox.get_by_test_id("close-button").click()
            expect(inbox.locator(".queue-item")).to_have_count(0)
            expect(inbox.get_by_test_id("pane-meta")).to_have_text("Closed")
            expect(inbox.get_by_test_id("close-button")).to_be_hidden()
            expect(reply_input).to_be_disabled()
            expect(banner).to_have_attribute("data-status", "closed")
            expect(handoff_button).to_be_visible()
            survey = customer.get_by_test_id("csat-form")
            expect(survey).to_be_visible()
            expect(survey.get_by_test_id("csat-submit")).to_be_disabled()
            survey.get_by_label("4 – Happy").check()
            survey.get_by_label("Anything you'd like to tell us?").fill(comment)
            survey.get_by_test_id("csat-submit").click()
            expect(customer.get_by_test_id("csat-thanks")).to_have_text(
                "Thank you for your answer!"
            )
            expect(survey).to_be_hidden()
            expect(customer.locator('.message[data-role="assistant"]')).to_have_count(1)

            customer.screenshot(path=str(SCREENSHOT_CUSTOMER), full_page=True)
            inbox.screenshot(path=str(SCREENSHOT_INBOX), full_page=True)
        finally:
            browser.close()

    conversation = Conversation.objects.get(pk=conversation_id)
    assert conversation.status == Conversation.Status.CLOSED
    assert conversation.handoff_reason == Conversation.HandoffReason.ASKED
    roles = list(conversation.messages.order_by("created_at", "id").values_list("role", flat=True))
    assert roles == ["user", "assistant", "user", "agent", "user"]
    agent_message = Message.objects.get(conversation=conversation, role=Message.Role.AGENT)
    assert (agent_message.text, agent_message.author) == (answer, agent)
    satisfaction = Satisfaction.objects.get()
    assert satisfaction.conversation_id == conversation.pk
    assert (satisfaction.score, satisfaction.comment) == (4, comment)
    assert satisfaction.handed_off
    assert satisfaction.model_version == active_model_version


def test_it_hands_the_customer_back_to_the_assistant(
    chromium: Path, active_model_version: object, agent: object, live_server_url: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url = live_server_url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            inbox = browser.new_context().new_page()
            _sign_in_to_the_inbox(inbox, url)
            customer = browser.new_context().new_page()
            customer.goto(f"{url}/")
            _expect_connected(customer)
            banner = customer.get_by_test_id("handoff-status")
            customer.get_by_test_id("handoff-button").click()
            expect(banner).to_have_attribute("data-status", "waiting_for_agent")

            inbox.get_by_test_id("queue-item").click()
            inbox.get_by_test_id("claim-button").click()
            expect(banner).to_have_text("Dana is answering you now.")
            inbox.get_by_test_id("hand-back-button").click()
            expect(inbox.locator(".queue-item")).to_have_count(0)
            expect(inbox.get_by_test_id("pane-meta")).to_have_text("Handed back to the assistant")

            # The customer is told, may ask for a person again, and the assistant answers.
            expect(banner).to_have_attribute("data-status", "open")
            expect(banner).to_have_text("The assistant is answering again.")
            expect(customer.get_by_test_id("handoff-button")).to_be_enabled()
            expect(customer.get_by_test_id("csat-form")).to_be_hidden()
            _send(customer, "how long does shipping take")
            expect(banner).to_have_text("")
            reply = customer.locator('.message[data-role="assistant"]')
            expect(reply.get_by_test_id("thumbs-up")).to_be_enabled(timeout=REPLY_TIMEOUT_MS)
            expect(reply).to_have_attribute("data-state", "done")
        finally:
            browser.close()

    conversation = Conversation.objects.get()
    assert conversation.status == Conversation.Status.OPEN
    assert conversation.agent is None
    assert not Satisfaction.objects.exists()


def test_a_long_queue_comes_a_page_at_a_time(chromium: Path, agent: object, tmp_path: Path) -> None:
    from django.utils import timezone
    from playwright.sync_api import expect, sync_playwright

    now = timezone.now()
    for n in range(5):
        Conversation.objects.create(
            session_key=f"customer-{n}",
            status=Conversation.Status.WAITING_FOR_AGENT,
            handed_off_at=now - timedelta(minutes=10 - n),
        )
    with (
        daphne_serving(tmp_path, {"HANDOFF_INBOX_PAGE_SIZE": "2"}) as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            inbox = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            _sign_in_to_the_inbox(inbox, url)
            more = inbox.get_by_test_id("queue-more")
            expect(inbox.get_by_test_id("queue-item")).to_have_count(2)
            expect(more).to_have_text("Show more: 3 more in the queue")

            more.click()
            expect(inbox.get_by_test_id("queue-item")).to_have_count(4)
            expect(more).to_have_text("Show more: 1 more in the queue")
            more.click()
            expect(inbox.get_by_test_id("queue-item")).to_have_count(5)
            expect(more).to_be_hidden()
            expect(inbox.get_by_test_id("waiting-count")).to_have_text("5")
        finally:
            browser.close()
