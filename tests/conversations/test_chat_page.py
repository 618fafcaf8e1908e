"""The chat page at /: rendered with the feedback reasons and limits, served with its modules."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from conversations.models import Feedback

STATIC_CHAT = Path(settings.BASE_DIR) / "static" / "chat"
TEMPLATES = Path(settings.BASE_DIR) / "templates"
MODULES = sorted(STATIC_CHAT.glob("*.js"))
# `import ... from "./x.js"` and `import "./x.js"`.
IMPORT_RE = re.compile(r"""^\s*import\s+(?:[^'";]+?\s+from\s+)?["']([^"']+)["']""", re.MULTILINE)


@pytest.fixture
def page(client):
    return client.get("/")


@pytest.mark.django_db
def test_it_renders_the_chat_page(page):
    assert page.status_code == 200
    assert [t.name for t in page.templates][:2] == ["conversations/chat.html", "base.html"]
    html = page.content.decode()
    assert "our company" in html  # no profile, no settings: neutral words
    assert 'role="log"' in html
    assert 'aria-live="polite"' in html
    assert '<script type="module" src="/static/chat/main.js">' in html


@pytest.mark.django_db
def test_it_offers_every_feedback_reason(page):
    html = page.content.decode()
    for code, label in Feedback.Reason.choices:
        assert f'value="{code}"' in html
        assert f"<span>{label}</span>" in html.replace("&#x27;", "'")


@pytest.mark.django_db
def test_it_creates_a_session_cookie(client):
    response = client.get("/")
    assert settings.SESSION_COOKIE_NAME in response.cookies
    assert response.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.session.session_key


@pytest.mark.django_db
def test_it_keeps_the_session_on_the_next_visit(client):
    first = client.get("/").cookies[settings.SESSION_COOKIE_NAME].value
    client.get("/")
    assert client.session.session_key == first


@pytest.mark.django_db
@override_settings(CHAT_MAX_MESSAGE_CHARS=123)
def test_it_limits_the_textarea_to_the_message_setting(client):
    html = client.get("/").content.decode()
    assert 'data-max-message-chars="123"' in html
    assert 'maxlength="123"' in html
    assert "/ 123" in html


def test_it_has_the_chat_modules():
    names = {module.name for module in MODULES}
    assert {"main.js", "connection.js", "message-list.js", "feedback-controls.js"} <= names
    # main.js imports the others: an IMPORT_RE that finds nothing would check nothing below.
    assert IMPORT_RE.findall((STATIC_CHAT / "main.js").read_text()), "IMPORT_RE is stale"


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["chat.css", *(module.name for module in MODULES)])
def test_it_serves_the_static_files(client, name):
    response = client.get(f"/static/chat/{name}")
    assert response.status_code == 200
    expected = "text/css" if name.endswith(".css") else "javascript"
    assert expected in response["Content-Type"]
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body == (STATIC_CHAT / name).read_bytes()


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_it_imports_only_modules_that_exist(module):
    for target in IMPORT_RE.findall(module.read_text()):
        assert target.startswith("./"), f"{module.name}: {target} is not a relative module"
        assert (STATIC_CHAT / target).is_file(), f"{module.name} imports missing {target}"


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_it_never_renders_text_as_html(module):
    source = module.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source, f"{module.name} uses {sink}"


@pytest.mark.parametrize("template", ["base.html", "conversations/chat.html"])
def test_it_has_no_inline_scripts_or_handlers(template):
    html = (TEMPLATES / template).read_text()
    assert not re.search(r"\son[a-z]+\s*=", html), f"{template} has an inline handler"
    for script in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in script, f"{template} has an inline script"
    assert "javascript:" not in html


@pytest.mark.django_db
def test_it_speaks_in_the_business_profiles_name_and_colour(client, settings):
    from knowledge.models import BusinessProfile

    settings.BUSINESS_HOURS = "Mon-Fri 9-17"
    BusinessProfile.objects.create(
        pk=1,
        business_name="Finch Bank",
        assistant_name="Finchy",
        greeting="Welcome to Finch Bank!",
        helps_with="cards, transfers and your account",
        colour="#aa3311",
    )
    html = client.get("/").content.decode()
    assert "<title>Finch Bank · customer service</title>" in html
    assert 'style="--brand: #aa3311"' in html
    assert 'data-assistant-name="Finchy"' in html
    assert "Welcome to Finch Bank!" in html
    assert "I can help with cards, transfers and your account." in html
