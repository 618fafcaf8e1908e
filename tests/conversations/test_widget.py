"""The chat widget on other sites (docs/widget.md): who may embed the chat, the embedded chat
page, the widget's config, owner tokens instead of cookies, and the install page for staff.
In a real browser: test_widget_browser.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from chatbot_site.asgi import application
from chatbot_site.env import envlist, web_origin
from conversations.models import Conversation
from conversations.owner_tokens import issue_owner_token
from knowledge.profile import forget_profile
from tests.conversations.chat_sockets import TIMEOUT, login_cookie, new_session_cookie, receive

SHOP = "https://shop.example"
WIDGET_JS = Path(settings.BASE_DIR) / "static" / "widget" / "widget.js"
TOKEN_RE = re.compile(r'<meta name="chat-owner-token" content="([^"]*)">')


@pytest.fixture(autouse=True)
def _profile_from_settings(settings):
    settings.BUSINESS_NAME = "Fjord Bikes"
    settings.BUSINESS_ASSISTANT_NAME = "Pedal"
    settings.BUSINESS_COLOUR = "#aa3300"
    forget_profile()
    yield
    forget_profile()


@pytest.fixture
def shop_allowed(settings):
    settings.CHAT_ALLOWED_ORIGINS = [SHOP]


def _socket(path: str, origin: str, cookie: str | None = None) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def _connects(origin: str) -> bool:
    """Whether a new customer's chat socket from a page of ``origin`` is accepted."""
    socket = _socket("/ws/chat/", origin, await new_session_cookie())
    connected, _ = await socket.connect(timeout=TIMEOUT)
    if connected:
        assert (await receive(socket))["type"] == "conversation"
    await socket.disconnect()  # a refused socket too: its consumer ends
    return connected


async def _open_with_token(token: str | None, conversation: str | None = None) -> dict | int:
    """The embedded chat's socket, with no cookie and ``token`` in the query: the
    `conversation` frame, or the close code the server refused with."""
    query = urlencode({k: v for k, v in (("conversation", conversation), ("owner", token)) if v})
    socket = _socket(f"/ws/chat/?{query}", "http://testserver")
    connected, _ = await socket.connect(timeout=TIMEOUT)
    assert connected
    first = await socket.receive_output(timeout=TIMEOUT)
    await socket.disconnect()
    if first["type"] == "websocket.close":
        return first["code"]
    return json.loads(first["text"])


# --- the chat socket's Origin check ---------------------------------------------------------


@pytest.mark.usefixtures("chat_test")
class TestChatSocketOrigin:
    async def test_it_refuses_a_site_that_is_not_allowed(self):
        assert not await _connects(SHOP)
        assert await database_sync_to_async(Conversation.objects.count)() == 0

    async def test_it_accepts_an_allowed_site(self, shop_allowed):
        assert await _connects(SHOP)
        assert await database_sync_to_async(Conversation.objects.count)() == 1

    @pytest.mark.parametrize(
        "origin", ["http://shop.example", "https://shop.example:8443", "https://evil.example"]
    )
    async def test_it_matches_scheme_host_and_port_exactly(self, shop_allowed, origin):
        assert not await _connects(origin)

    async def test_it_still_accepts_the_sites_own_hosts(self, shop_allowed):
        assert await _connects("http://testserver")
        assert await _connects("https://localhost:8443")

    async def test_it_keeps_the_inbox_to_the_sites_own_hosts(self, shop_allowed, staff_user):
        cookie = await login_cookie(staff_user)
        from_shop = _socket("/ws/inbox/", SHOP, cookie)
        connected, _ = await from_shop.connect(timeout=TIMEOUT)
        await from_shop.disconnect()
        assert not connected

        own = _socket("/ws/inbox/", "http://testserver", cookie)
        connected, _ = await own.connect(timeout=TIMEOUT)
        assert connected
        assert (await receive(own))["type"] == "inbox"
        await own.disconnect()


# --- CHAT_ALLOWED_ORIGINS ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "origins"),
    [
        ("", []),
        ("https://Shop.Example", ["https://shop.example"]),
        (
            "https://shop.example/, http://localhost:8001",
            ["https://shop.example", "http://localhost:8001"],
        ),
        (
            "https://shop.example:443,http://shop.example:80",
            ["https://shop.example", "http://shop.example"],
        ),
        ("http://[::1]:9000", ["http://[::1]:9000"]),
    ],
)
def test_it_reads_allowed_origins_as_browsers_write_them(monkeypatch, raw, origins):
    monkeypatch.setenv("CHAT_ALLOWED_ORIGINS", raw)
    assert envlist("CHAT_ALLOWED_ORIGINS", [], item=web_origin) == origins


@pytest.mark.parametrize(
    "raw",
    [
        "shop.example",
        "*",
        "https://*.shop.example",
        "https://shop.example/chat",
        "ftp://shop.example",
        "https://shop.example:99999",
        "https://user@shop.example",
        "https://shop.example?x=1",
        "https://shop.example 'unsafe-inline'",
    ],
)
def test_it_refuses_an_allowed_origin_that_is_not_one(monkeypatch, raw):
    monkeypatch.setenv("CHAT_ALLOWED_ORIGINS", f"https://ok.example,{raw}")
    with pytest.raises(ImproperlyConfigured) as refused:
        envlist("CHAT_ALLOWED_ORIGINS", [], item=web_origin)
    assert str(refused.value) == (
        f"CHAT_ALLOWED_ORIGINS: {raw!r} is not an origin such as https://shop.example.com "
        "(a scheme, a host and an optional port; no path, no wildcard)"
    )


# --- the embedded chat page -----------------------------------------------------------------


@pytest.mark.django_db
def test_it_lets_only_allowed_sites_frame_the_embedded_chat(client, shop_allowed):
    response = client.get("/widget/")

    assert response.status_code == 200
    assert response["Content-Security-Policy"] == f"frame-ancestors 'self' {SHOP}"
    assert "X-Frame-Options" not in response
    assert "no-store" in response["Cache-Control"]  # it carries the owner token


@pytest.mark.django_db
def test_it_lets_only_this_site_frame_the_embedded_chat_by_default(client):
    assert client.get("/widget/")["Content-Security-Policy"] == "frame-ancestors 'self'"


@pytest.mark.django_db
def test_it_still_forbids_framing_the_chat_page(client, shop_allowed):
    response = client.get("/")

    assert response["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" not in response


@pytest.mark.django_db
def test_it_renders_the_chat_compact_in_the_profiles_name(client):
    response = client.get("/widget/")
    html = response.content.decode()

    assert [t.name for t in response.templates][:3] == [
        "conversations/widget.html",
        "conversations/chat.html",
        "base.html",
    ]
    assert "<title>Pedal · Fjord Bikes</title>" in html
    assert '<h1 class="brand-name">Fjord Bikes</h1>' in html
    assert '<link rel="stylesheet" href="/static/chat/embed.css">' in html
    assert '<script type="module" src="/static/chat/main.js">' in html
    assert 'id="composer-input"' in html


@pytest.mark.django_db
def test_it_gives_an_anonymous_customer_an_owner_token_of_its_session(client):
    response = client.get("/widget/")

    [token] = TOKEN_RE.findall(response.content.decode())
    assert token == issue_owner_token(client.session.session_key)


@pytest.mark.django_db
def test_it_gives_no_owner_token_to_a_logged_in_user(client, customer_user):
    client.force_login(customer_user)

    assert TOKEN_RE.findall(client.get("/widget/").content.decode()) == [""]


# --- owner tokens on the chat socket --------------------------------------------------------


@database_sync_to_async
def _widget_token() -> str:
    [token] = TOKEN_RE.findall(Client().get("/widget/").content.decode())
    return token


@pytest.mark.usefixtures("chat_test")
class TestOwnerTokens:
    async def test_it_resumes_a_conversation_by_owner_token_without_a_cookie(self):
        token = await _widget_token()
        hello = await _open_with_token(token)

        resumed = await _open_with_token(token, hello["conversation"])

        assert resumed["type"] == "conversation"
        assert resumed["conversation"] == hello["conversation"]

    async def test_it_refuses_the_conversation_to_another_token_or_none(self):
        hello = await _open_with_token(await _widget_token())

        assert await _open_with_token(await _widget_token(), hello["conversation"]) == 4403
        assert await _open_with_token(None, hello["conversation"]) == 4403

    async def test_it_ignores_a_tampered_token(self):
        token = await _widget_token()
        hello = await _open_with_token(token)
        session_key, _, signature = token.partition(":")
        forged = f"{session_key}:{signature[::-1]}"

        assert await _open_with_token(forged, hello["conversation"]) == 4403

    async def test_it_does_not_let_a_token_stand_for_a_user(self, customer_user):
        user_cookie = await login_cookie(customer_user)
        socket = _socket("/ws/chat/", "http://testserver", user_cookie)
        await socket.connect(timeout=TIMEOUT)
        hello = await receive(socket)
        await socket.disconnect()
        user_session_key = user_cookie.partition("=")[2]

        token = await database_sync_to_async(issue_owner_token)(user_session_key)

        assert await _open_with_token(token, hello["conversation"]) == 4403


# --- the widget's config --------------------------------------------------------------------


@pytest.mark.django_db
def test_it_gives_an_allowed_site_the_widgets_config(client, shop_allowed):
    response = client.get("/widget/config.json", headers={"Origin": SHOP})

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert "Origin" in response["Vary"]
    assert response.json() == {
        "business_name": "Fjord Bikes",
        "assistant_name": "Pedal",
        "colour": "#aa3300",
    }


@pytest.mark.django_db
def test_it_tells_a_site_not_allowed_that_it_may_not_show_the_chat(client):
    response = client.get("/widget/config.json", headers={"Origin": SHOP})

    assert response.status_code == 403
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response.json() == {
        "error": "origin_not_allowed",
        "detail": "This website may not show our chat.",
    }


@pytest.mark.django_db
@pytest.mark.parametrize("headers", [{}, {"Origin": "http://testserver"}])
def test_it_gives_this_site_the_widgets_config(client, headers):
    response = client.get("/widget/config.json", headers=headers)

    assert response.status_code == 200
    assert response.json()["business_name"] == "Fjord Bikes"


# --- the install page -----------------------------------------------------------------------


@pytest.mark.django_db
def test_it_shows_staff_the_snippet_the_allowed_sites_and_a_preview(
    client, staff_user, shop_allowed
):
    client.force_login(staff_user)

    response = client.get("/widget/install/")
    html = response.content.decode()

    assert response.status_code == 200
    snippet = (
        '<script src="http://testserver/static/widget/widget.js" '
        'data-chatbot-origin="http://testserver" async></script>'
    )
    assert response.context["snippet"] == snippet
    assert "&lt;script src=&quot;http://testserver/static/widget/widget.js&quot;" in html
    assert f"<li><code>{SHOP}</code></li>" in html
    assert snippet in html  # the preview: the widget itself on this page
    assert '<script type="module" src="/static/widget/install.js">' in html


@pytest.mark.django_db
def test_it_says_when_no_other_site_may_show_the_chat(client, staff_user):
    client.force_login(staff_user)

    html = client.get("/widget/install/").content.decode()

    assert "No other website may show the chat yet: only this one" in html


@pytest.mark.django_db
def test_it_keeps_the_install_page_from_customers(client, customer_user):
    assert client.get("/widget/install/").status_code == 302
    client.force_login(customer_user)
    response = client.get("/widget/install/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


# --- the script -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["widget/widget.js", "widget/install.js", "chat/widget-frame.js"])
def test_it_serves_the_widgets_scripts(client, name):
    response = client.get(f"/static/{name}")

    assert response.status_code == 200
    assert "javascript" in response["Content-Type"]


def test_it_never_renders_text_as_html_on_someone_elses_page():
    source = WIDGET_JS.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source
    assert "import " not in source  # a classic script: it runs on pages we do not control
