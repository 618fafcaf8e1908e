"""The staff inbox page at /inbox/ (and the chat page's handoff controls): who may open it,
what it is rendered with, and its modules."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from conversations.views import SATISFACTION_SCORES
from tests.agents import allow_answering

STATIC = Path(settings.BASE_DIR) / "static"
STATIC_INBOX = STATIC / "inbox"
TEMPLATES = Path(settings.BASE_DIR) / "templates"
INBOX_MODULES = sorted(STATIC_INBOX.glob("*.js"))
# `import ... from "./x.js"` and `import "./x.js"`.
IMPORT_RE = re.compile(r"""^\s*import\s+(?:[^'";]+?\s+from\s+)?["']([^"']+)["']""", re.MULTILINE)


@pytest.fixture
def staff_client(client, django_user_model):
    agent = allow_answering(
        django_user_model.objects.create_user(
            username="agent", password="agent-pass-123", first_name="Dana", is_staff=True
        )
    )
    client.force_login(agent)
    return client


def test_it_is_at_slash_inbox():
    assert reverse("conversations:inbox") == "/inbox/"


@pytest.mark.django_db
def test_it_sends_anonymous_visitors_to_the_admin_login(client):
    response = client.get("/inbox/")
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next=/inbox/"


@pytest.mark.django_db
def test_it_sends_customers_who_are_not_staff_to_the_admin_login(client, customer_user):
    client.force_login(customer_user)
    response = client.get("/inbox/")
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next=/inbox/"


@pytest.mark.django_db
def test_it_sends_inactive_staff_to_the_admin_login(client, django_user_model):
    former = django_user_model.objects.create_user(
        username="former", password="former-pass-123", is_staff=True, is_active=False
    )
    client.force_login(former)
    assert client.get("/inbox/").status_code == 302


@pytest.mark.django_db
def test_it_renders_the_inbox_for_staff(staff_client):
    response = staff_client.get("/inbox/")
    assert response.status_code == 200
    assert [t.name for t in response.templates][:2] == ["conversations/inbox.html", "base.html"]
    html = response.content.decode()
    assert 'data-ws-path="/ws/inbox/"' in html
    assert '<script type="module" src="/static/inbox/main.js">' in html
    assert 'href="/static/inbox/inbox.css"' in html
    assert 'href="/static/chat/chat.css"' in html
    assert f'data-max-message-chars="{settings.CHAT_MAX_MESSAGE_CHARS}"' in html
    assert '<label class="visually-hidden" for="reply-input">Reply to the customer</label>' in html
    assert 'role="log"' in html
    assert 'role="alert"' in html
    for action in ("claim-button", "hand-back-button", "close-button"):
        assert f'data-testid="{action}"' in html


@pytest.mark.django_db
def test_it_links_the_inbox_from_the_admin(staff_client):
    html = staff_client.get(reverse("admin:index")).content.decode()
    assert '<a href="/inbox/" data-testid="admin-inbox-link">Inbox</a>' in html
    assert "Log out" in html  # the rest of the user links are still there


@pytest.mark.django_db
def test_it_offers_the_chat_a_person_and_the_survey(client):
    html = client.get("/").content.decode()
    assert re.search(
        r'<button type="button" class="button button-secondary" id="handoff-button"\s+'
        r'data-testid="handoff-button"',
        html,
    )
    assert '<span class="button-label">Talk to a person</span>' in html
    assert re.search(r'id="handoff-status"[^>]*\s+role="status" aria-live="polite"', html)
    assert 'data-testid="csat-form"' in html
    for score, label in SATISFACTION_SCORES:
        assert f'value="{score}" data-testid="csat-score-{score}"' in html
        assert f"<span>{score} – {label}</span>" in html
    assert [score for score, _ in SATISFACTION_SCORES] == [1, 2, 3, 4, 5]
    assert f'maxlength="{settings.CHAT_MAX_COMMENT_CHARS}"' in html


def test_it_has_the_inbox_modules():
    names = {module.name for module in INBOX_MODULES}
    assert {"main.js", "queue-list.js", "transcript-view.js"} <= names
    assert IMPORT_RE.findall((STATIC_INBOX / "main.js").read_text()), "IMPORT_RE is stale"


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["inbox.css", *(module.name for module in INBOX_MODULES)])
def test_it_serves_the_inbox_static_files(client, name):
    response = client.get(f"/static/inbox/{name}")
    assert response.status_code == 200
    expected = "text/css" if name.endswith(".css") else "javascript"
    assert expected in response["Content-Type"]
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert body == (STATIC_INBOX / name).read_bytes()


@pytest.mark.parametrize("module", INBOX_MODULES, ids=lambda path: path.name)
def test_it_imports_only_modules_that_exist(module):
    for target in IMPORT_RE.findall(module.read_text()):
        assert target.startswith(("./", "../chat/")), f"{module.name}: {target} is not ours"
        assert (STATIC_INBOX / target).resolve().is_file(), f"{module.name} imports {target}"


@pytest.mark.parametrize("module", INBOX_MODULES, ids=lambda path: path.name)
def test_it_never_renders_text_as_html(module):
    source = module.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source, f"{module.name} uses {sink}"


def test_it_has_no_inline_scripts_or_handlers():
    html = (TEMPLATES / "conversations" / "inbox.html").read_text()
    assert not re.search(r"\son[a-z]+\s*=", html), "inbox.html has an inline handler"
    for script in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in script, "inbox.html has an inline script"
    assert "javascript:" not in html
