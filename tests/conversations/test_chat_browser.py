"""The chat page in a real browser: headless Chromium against a live Daphne (see
`tests.conversations.live_server`) and the tiny model."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

from conversations.models import Conversation, Feedback, Message
from tests.conversations.live_server import CHROMIUM_ARGS, daphne_serving

SCREENSHOT_DESKTOP = Path("/tmp/chat-screenshot.png")
SCREENSHOT_MOBILE = Path("/tmp/chat-mobile.png")
REPLY_TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live_server_url(transactional_db: None, tmp_path: Path) -> Iterator[str]:
    with daphne_serving(tmp_path) as url:
        yield url


@contextmanager
def _chat_page(chromium: Path, url: str, frames: list[dict] | None = None) -> Iterator[Page]:
    """The chat page in a fresh headless Chromium, connected.

    Django refuses ORM calls while Playwright's event loop runs in this thread: check the
    database after the `with` block.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            if frames is not None:
                page.on(
                    "websocket",
                    lambda ws: ws.on("framereceived", lambda data: frames.append(json.loads(data))),
                )
            page.goto(f"{url}/")
            _expect_connected(page)
            yield page
        finally:
            browser.close()


def _expect_connected(page: Page) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")


def _send_and_wait_for_reply(page: Page, text: str) -> Locator:
    """Types `text`, presses Enter, waits until the reply has ended; returns the reply."""
    from playwright.sync_api import expect

    replies_before = page.locator('.message[data-role="assistant"]').count()
    composer = page.get_by_test_id("composer-input")
    composer.fill(text)
    composer.press("Enter")
    expect(composer).to_have_value("")
    reply = page.locator('.message[data-role="assistant"]').nth(replies_before)
    expect(reply.get_by_test_id("thumbs-down")).to_be_enabled(timeout=REPLY_TIMEOUT_MS)
    expect(reply).to_have_attribute("data-state", "done")
    return reply


def _stored_conversation(page: Page) -> str | None:
    return page.evaluate("() => sessionStorage.getItem('chat:conversation')")


def test_it_streams_a_reply_and_stores_thumbs_down_feedback(
    chromium: Path, active_model_version: object, live_server_url: str
) -> None:
    from playwright.sync_api import expect

    reason_code, reason_label = Feedback.Reason.NOT_ANSWERED, Feedback.Reason.NOT_ANSWERED.label
    correction = "Orders ship within 2 business days; track them under My orders."
    frames: list[dict] = []

    with _chat_page(chromium, live_server_url, frames) as page:
        reply = _send_and_wait_for_reply(
            page, "hi, ordered boots last tuesday, still nothing. where is it??"
        )
        user = page.locator('.message[data-role="user"]')
        expect(user).to_have_count(1)
        expect(user).to_have_attribute("data-message-id", re.compile(r"^\d+$"))
        reply_id = int(reply.get_attribute("data-message-id"))
        reply_text = reply.get_by_test_id("message-text").text_content()
        assert reply_text

        thumbs_down = reply.get_by_test_id("thumbs-down")
        thumbs_down.click()
        expect(thumbs_down).to_have_attribute("aria-expanded", "true")
        form = reply.get_by_test_id("feedback-form")
        expect(form).to_be_visible()
        form.get_by_label(reason_label).check()
        form.get_by_label("What would have been a better answer?").fill(correction)
        form.get_by_test_id("feedback-submit").click()

        expect(reply.get_by_test_id("feedback-confirmation")).to_have_text(
            "Thanks for your feedback"
        )
        expect(thumbs_down).to_have_attribute("aria-pressed", "true")
        expect(reply.get_by_test_id("thumbs-up")).to_have_attribute("aria-pressed", "false")
        expect(form).to_have_count(0)

        page.screenshot(path=str(SCREENSHOT_DESKTOP), full_page=True)
        page.set_viewport_size({"width": 375, "height": 740})
        page.screenshot(path=str(SCREENSHOT_MOBILE), full_page=True)

    # Streamed: deltas came between start and end, and they add up to the final text.
    kinds = [frame["type"] for frame in frames]
    assert kinds[0] == "conversation"
    deltas = [f["text"] for f in frames if f["type"] == "bot_message.delta" and f["id"] == reply_id]
    assert deltas, kinds
    end = next(f for f in frames if f["type"] == "bot_message.end")
    assert end["id"] == reply_id
    assert "".join(deltas) == end["text"] == reply_text
    assert kinds.index("bot_message.start") < kinds.index("bot_message.delta")
    assert kinds.index("bot_message.end") < kinds.index("feedback.saved")

    feedback = Feedback.objects.get()
    assert feedback.message_id == reply_id
    assert feedback.rating == -1
    assert feedback.reason == reason_code
    assert feedback.correction == correction
    assert Message.objects.get(pk=reply_id).role == Message.Role.ASSISTANT


def test_it_resumes_after_a_reload_and_starts_over_on_request(
    chromium: Path, active_model_version: object, live_server_url: str
) -> None:
    from playwright.sync_api import expect

    with _chat_page(chromium, live_server_url) as page:
        reply = _send_and_wait_for_reply(page, "do you ship to canada")
        reply_id = reply.get_attribute("data-message-id")
        reply.get_by_test_id("thumbs-up").click()
        expect(reply.get_by_test_id("thumbs-up")).to_have_attribute("aria-pressed", "true")
        first = _stored_conversation(page)

        page.reload()
        _expect_connected(page)
        assert _stored_conversation(page) == first
        messages = page.locator(".message")
        expect(messages).to_have_count(2)
        expect(messages.nth(0)).to_have_attribute("data-role", "user")
        expect(messages.nth(0).get_by_test_id("message-text")).to_have_text("do you ship to canada")
        resumed = page.locator(f'.message[data-message-id="{reply_id}"]')
        expect(resumed.get_by_test_id("thumbs-up")).to_have_attribute("aria-pressed", "true")
        expect(resumed.get_by_test_id("thumbs-down")).to_have_attribute("aria-pressed", "false")

        page.get_by_test_id("new-conversation").click()
        expect(page.locator(".message")).to_have_count(0)
        _expect_connected(page)
        expect(page.locator("#welcome")).to_be_visible()
        second = _stored_conversation(page)

    assert second not in (None, first)
    assert Conversation.objects.filter(pk__in=[first, second]).count() == 2
    assert Feedback.objects.get().rating == 1


def test_it_starts_a_fresh_conversation_when_the_remembered_one_is_unknown(
    chromium: Path, live_server_url: str
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    with _chat_page(chromium, live_server_url) as page:
        page.evaluate("(id) => sessionStorage.setItem('chat:conversation', id)", unknown)
        page.reload()  # connects with ?conversation=<unknown>, is refused with 4404
        _expect_connected(page)
        fresh = _stored_conversation(page)
        composer_enabled = page.get_by_test_id("composer-input").is_enabled()

    assert fresh not in (None, unknown)
    assert Conversation.objects.filter(pk=fresh).exists()
    assert composer_enabled
