"""The chat widget on other sites, in a real browser: headless Chromium, the bot on a live Daphne
at http://127.0.0.1:<port>, and the business's pages on other origins served by a tiny HTTP
server: http://localhost:<shop> (in CHAT_ALLOWED_ORIGINS) and http://localhost:<other> (not).

127.0.0.1 and localhost are different sites, so the widget's frame is a third-party one, as on a
real business's site: Chromium stores no cookie for it and refuses it sessionStorage.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import FrameLocator, Locator, Page

from bench.web_process import free_ports
from conversations.models import Conversation, Message
from tests.conversations.live_server import CHROMIUM_ARGS, server_process

REPLY_TIMEOUT_MS = 60_000
BUSINESS = "Fjord Bikes"
BRAND_RGB = "rgb(170, 51, 0)"  # BUSINESS_COLOUR #aa3300
# The business's own CSS, at its worst: none of it may reach the widget.
HOSTILE_CSS = """
  * { font-size: 40px !important; color: lime !important; box-sizing: content-box !important; }
  button, iframe, [role="dialog"] { display: none !important; }
  chatbot-widget { display: none !important; opacity: 0 !important; }
"""
NOT_ALLOWED = "Our chat can't be shown on this website."
FAILED = "Our chat could not be loaded right now."

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@dataclass
class Sites:
    bot: str  # http://127.0.0.1:<port>, the chat
    shop: str  # http://localhost:<port>, allowed to embed it
    other: str  # http://localhost:<port>, not allowed
    dead: str  # an origin where nothing listens


def _host_page(sites: Sites, path: str) -> str | None:
    """The business's pages: the snippet on a page with hostile CSS, raw frames of the chat,
    and the snippet pointing at a chat that is not there."""
    snippet = f'<script src="{sites.bot}/static/widget/widget.js" async></script>'
    if path == "/":
        body = f"<h1>Welcome to the shop</h1><p>Bikes and more.</p>{snippet}"
        return f"<!doctype html><title>Shop</title><style>{HOSTILE_CSS}</style>{body}"
    if path == "/frames.html":
        frames = "".join(
            f'<iframe id="{name}" src="{sites.bot}{src}" '
            f"onload=\"document.body.dataset.{name} = 'loaded'\"></iframe>"
            for name, src in (("embedded", "/widget/"), ("page", "/"))
        )
        return f"<!doctype html><title>Frames</title><body>{frames}</body>"
    if path == "/offline.html":
        offline = snippet.replace(" async", f' data-chatbot-origin="{sites.dead}" async')
        return f"<!doctype html><title>Offline</title><p>The chat is down.</p>{offline}"
    return None


@contextmanager
def _serving_pages(port: int, sites: Sites) -> Iterator[None]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = _host_page(sites, self.path)
            self.send_response(200 if page else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write((page or "not found").encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def sites(transactional_db: None, tmp_path: Path) -> Iterator[Sites]:
    shop_port, other_port, dead_port = free_ports(3)
    shop, other = f"http://localhost:{shop_port}", f"http://localhost:{other_port}"
    env = {
        "CHAT_ALLOWED_ORIGINS": shop,
        "BUSINESS_NAME": BUSINESS,
        "BUSINESS_COLOUR": "#aa3300",
    }
    args = ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "chatbot_site.asgi:application"]
    with server_process(args, "/", tmp_path / "daphne.log", env) as (bot, _):
        found = Sites(bot=bot, shop=shop, other=other, dead=f"http://127.0.0.1:{dead_port}")
        with _serving_pages(shop_port, found), _serving_pages(other_port, found):
            yield found


@contextmanager
def _browser(chromium: Path) -> Iterator[Page]:
    """A fresh headless Chromium. Django refuses ORM calls while Playwright's event loop runs in
    this thread: check the database after the `with` block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 800})
        finally:
            browser.close()


def _bubble(page: Page, name: str = f"Chat with {BUSINESS}") -> Locator:
    return page.get_by_role("button", name=name)


def _chat(page: Page) -> FrameLocator:
    return page.frame_locator('[data-testid="chatbot-frame"]')


def _send_and_wait_for_reply(chat: FrameLocator, text: str) -> Locator:
    from playwright.sync_api import expect

    composer = chat.get_by_test_id("composer-input")
    composer.fill(text)
    composer.press("Enter")
    expect(composer).to_have_value("")
    reply = chat.locator('.message[data-role="assistant"]').last
    expect(reply.get_by_test_id("thumbs-down")).to_be_enabled(timeout=REPLY_TIMEOUT_MS)
    expect(reply).to_have_attribute("data-state", "done")
    return reply


def test_it_chats_in_the_widget_on_an_allowed_site(
    chromium: Path, active_model_version: object, sites: Sites
) -> None:
    from playwright.sync_api import expect

    with _browser(chromium) as page:
        page.goto(f"{sites.shop}/")
        bubble = _bubble(page)
        expect(bubble).to_be_visible()
        expect(bubble).to_have_attribute("aria-expanded", "false")
        # The shop's CSS did not reach it: its own size and the business's colour.
        box = bubble.bounding_box()
        assert (round(box["width"]), round(box["height"])) == (56, 56)
        assert box["x"] + box["width"] > 1280 - 40 and box["y"] + box["height"] > 800 - 40
        expect(bubble).to_have_css("background-color", BRAND_RGB)

        # Opened from the keyboard: the chat takes the focus once connected.
        bubble.focus()
        page.keyboard.press("Enter")
        expect(bubble).to_have_attribute("aria-expanded", "true")
        chat = _chat(page)
        expect(chat.get_by_test_id("connection-status")).to_have_attribute(
            "data-state", "connected"
        )
        expect(chat.locator(".brand-name")).to_have_text(BUSINESS)
        expect(chat.get_by_test_id("composer-input")).to_be_focused()

        reply = _send_and_wait_for_reply(chat, "do you ship to canada")
        assert reply.get_by_test_id("message-text").text_content()

        # Escape in the chat closes it and gives the focus back to the bubble.
        chat.get_by_test_id("composer-input").press("Escape")
        expect(page.get_by_test_id("chatbot-panel")).to_be_hidden()
        expect(bubble).to_have_attribute("aria-expanded", "false")
        expect(bubble).to_be_focused()

        # The shop's next page: the same conversation, though no cookie was stored for the chat.
        bot_cookies = page.context.cookies(sites.bot)
        page.reload()
        _bubble(page).click()
        chat = _chat(page)
        expect(chat.get_by_test_id("connection-status")).to_have_attribute(
            "data-state", "connected"
        )
        messages = chat.locator(".message")
        expect(messages).to_have_count(2)
        expect(messages.first.get_by_test_id("message-text")).to_have_text("do you ship to canada")

        # The bubble closes it too.
        _bubble(page).click()
        expect(page.get_by_test_id("chatbot-panel")).to_be_hidden()

    assert bot_cookies == []  # the frame was third-party: what kept the customer is the token
    conversation = Conversation.objects.get()
    assert list(conversation.messages.values_list("role", flat=True).order_by("id")) == [
        Message.Role.USER,
        Message.Role.ASSISTANT,
    ]


def test_it_tells_the_customer_when_the_site_may_not_show_the_chat(
    chromium: Path, sites: Sites
) -> None:
    from playwright.sync_api import expect

    with _browser(chromium) as page:
        page.goto(f"{sites.other}/")
        bubble = _bubble(page, "Chat with us")
        bubble.click()

        panel = page.get_by_test_id("chatbot-panel")
        expect(panel.get_by_role("alert")).to_contain_text(NOT_ALLOWED)
        link = panel.get_by_role("link", name="Open the chat in a new tab")
        expect(link).to_have_attribute("href", f"{sites.bot}/")
        expect(panel.locator("iframe")).to_have_count(0)

        page.keyboard.press("Escape")
        expect(panel).to_be_hidden()
        expect(bubble).to_be_focused()

    assert Conversation.objects.count() == 0


def test_it_lets_only_allowed_sites_frame_the_chat(chromium: Path, sites: Sites) -> None:
    """Copying the snippet's frame by hand does not help a site that is not allowed."""
    from playwright.sync_api import expect

    with _browser(chromium) as page:
        page.goto(f"{sites.shop}/frames.html")
        expect(page.locator("body")).to_have_attribute("data-embedded", "loaded")
        expect(page.locator("body")).to_have_attribute("data-page", "loaded")
        expect(page.frame_locator("#embedded").locator("#chat-app")).to_have_count(1)
        # The chat page itself is no one's to frame (X-Frame-Options: DENY).
        expect(page.frame_locator("#page").locator("#chat-app")).to_have_count(0)

        page.goto(f"{sites.other}/frames.html")
        expect(page.locator("body")).to_have_attribute("data-embedded", "loaded")
        expect(page.frame_locator("#embedded").locator("#chat-app")).to_have_count(0)


def test_it_tells_the_customer_when_the_chat_does_not_load(chromium: Path, sites: Sites) -> None:
    from playwright.sync_api import expect

    with _browser(chromium) as page:
        page.goto(f"{sites.shop}/offline.html")
        _bubble(page, "Chat with us").click()
        alert = page.get_by_test_id("chatbot-panel").get_by_role("alert")
        expect(alert).to_contain_text(FAILED)
        expect(alert.get_by_role("link")).to_have_attribute("href", f"{sites.dead}/")

        # Config read, but the frame never says it loaded (a proxy's error page, say).
        page.clock.install()
        page.route(re.compile(r".*/widget/$"), lambda route: route.fulfill(body="Bad gateway"))
        page.goto(f"{sites.shop}/")
        _bubble(page).click()
        expect(_chat(page).locator("body")).to_have_text("Bad gateway")
        page.clock.fast_forward(16_000)
        expect(page.get_by_test_id("chatbot-panel").get_by_role("alert")).to_contain_text(FAILED)
